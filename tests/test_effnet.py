"""EfficientNet-Lite0 fine-tuning: the exported file has the bot's outputs, and float16 weights
halve it without changing the arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from tests.optional import NEEDS_TORCH


def test_lite0_exports_the_bots_outputs_and_half_weights_keep_its_logits(tmp_path):
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    ort = pytest.importorskip("onnxruntime")
    from bot.ml.preprocess import INPUT_SIZE
    from bot.training.effnet import ExportLite, LiteCam, imagenet_lite0
    from bot.training.export import export_onnx, half_weights

    torch.manual_seed(0)
    net = LiteCam(imagenet_lite0(), size=160).eval()
    exported = ExportLite(net).eval()
    path = export_onnx(exported, tmp_path / "lite.onnx")
    half = half_weights(path, tmp_path / "lite16.onnx")
    x = np.random.default_rng(0).normal(size=(2, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in exported(torch.from_numpy(x))]
    runs = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
            ["logit", "cam", "embedding"], {"image": x}
        )
        for p in (path, half)
    ]
    logit, cam, embedding = runs[0]
    assert logit.shape == (2,) and cam.shape == (2, 14, 14) and embedding.shape == (2, 4 * 1280)
    np.testing.assert_allclose(logit, cam.mean(axis=(1, 2)), atol=1e-5)
    for got, want in zip(runs[0], expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(runs[1][0], logit, atol=2e-2)
    assert half.stat().st_size < 0.55 * path.stat().st_size
    assert half.stat().st_size < 10e6


def test_the_grey_stem_sees_what_an_rgb_copy_of_the_image_shows():
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    from bot.training.effnet import LiteCam, imagenet_lite0

    backbone = imagenet_lite0().eval()
    rgb_stem = backbone._conv_stem
    x = torch.randn(1, 1, 160, 160)
    with torch.no_grad():
        want = rgb_stem(x.expand(-1, 3, -1, -1)).clone()
        net = LiteCam(backbone, size=160).eval()
        got = net.stem(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
