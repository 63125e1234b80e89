"""Adapters from the core's ports to the outside world: Slack files, Rekognition, ONNX, AWS."""
