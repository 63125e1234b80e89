"""Training the local model (needs the `train` extra: `pip install -e '.[train]'`).

Only this package imports torch; the bot itself runs the exported ONNX file with onnxruntime.
`bot.training.data` is torch-free (the file listing and the patient-level split).
"""

from __future__ import annotations

TORCH_MISSING = (
    "Training needs PyTorch, which the bot does not install at run time. "
    "Install the train extra: pip install -e '.[train]'"
)


def require_torch():
    """Import torch, or fail with a message that says how to get it."""
    try:
        import torch
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(TORCH_MISSING) from exc
    return torch
