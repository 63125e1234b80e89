"""The local model's run-time pieces: preprocessing, metrics, calibration, heatmaps, model card.

Nothing here imports torch; numpy, Pillow and onnxruntime are enough at run time.
"""
