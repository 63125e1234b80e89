"""The bundled model is the mean of two members: one ONNX file whose logit and CAM are the
members' means and whose embedding is the first member's (what the learned guard reads)."""

from __future__ import annotations

import numpy as np
import pytest

from bot.ml.preprocess import INPUT_SIZE
from tests.optional import NEEDS_TORCH


def member(path, scale: float, shift: float):
    """A tiny model with the bot's interface: CAM = scale x (14 x 14 mean-pooled image) +
    shift, logit = the CAM's mean, embedding = the pooled image times `scale`."""
    onnx = pytest.importorskip("onnx", reason=NEEDS_TORCH)
    from onnx import TensorProto, helper, numpy_helper

    side = INPUT_SIZE // 14
    nodes = [
        helper.make_node(
            "AveragePool", ["image"], ["pooled"], kernel_shape=[side, side], strides=[side, side]
        ),
        helper.make_node("Mul", ["pooled", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "shift"], ["cam4"]),
        helper.make_node("Squeeze", ["cam4", "one"], ["cam"]),
        helper.make_node("ReduceMean", ["cam"], ["logit"], axes=[1, 2], keepdims=0),
        helper.make_node("Flatten", ["scaled"], ["embedding"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "member",
        [
            helper.make_tensor_value_info(
                "image", TensorProto.FLOAT, ["n", 1, INPUT_SIZE, INPUT_SIZE]
            )
        ],
        [
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["n", 14, 14]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 196]),
        ],
        initializer=[
            numpy_helper.from_array(np.array(scale, np.float32), "scale"),
            numpy_helper.from_array(np.array(shift, np.float32), "shift"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def run(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(
        zip(
            ("logit", "cam", "embedding"),
            session.run(["logit", "cam", "embedding"], {"image": x}),
            strict=True,
        )
    )


def test_the_ensemble_answers_the_mean_of_its_members_and_keeps_the_first_embedding(tmp_path):
    pytest.importorskip("torch", reason=NEEDS_TORCH)  # bot.training's tools import it
    from bot.training.ensemble import ensemble

    first = member(tmp_path / "a.onnx", 2.0, -1.0)
    second = member(tmp_path / "b.onnx", -0.5, 3.0)
    both = ensemble(first, second, tmp_path / "both.onnx")
    x = np.random.default_rng(0).normal(size=(3, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    a, b, got = run(first, x), run(second, x), run(both, x)
    np.testing.assert_allclose(got["logit"], (a["logit"] + b["logit"]) / 2, atol=1e-5)
    np.testing.assert_allclose(got["cam"], (a["cam"] + b["cam"]) / 2, atol=1e-5)
    np.testing.assert_allclose(got["logit"], got["cam"].mean(axis=(1, 2)), atol=1e-5)
    np.testing.assert_array_equal(got["embedding"], a["embedding"])
    assert not np.allclose(a["logit"], b["logit"])  # the members really differ


def test_members_of_different_opsets_are_refused(tmp_path):
    pytest.importorskip("torch", reason=NEEDS_TORCH)  # bot.training's tools import it
    onnx = pytest.importorskip("onnx", reason=NEEDS_TORCH)
    from bot.training.ensemble import ensemble

    first = member(tmp_path / "a.onnx", 1.0, 0.0)
    second = member(tmp_path / "b.onnx", 1.0, 0.0)
    model = onnx.load(str(second))
    model.opset_import[0].version = 18
    onnx.save(model, str(second))
    with pytest.raises(ValueError, match="different opsets"):
        ensemble(first, second, tmp_path / "both.onnx")
