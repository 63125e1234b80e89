"""Give an exported model that lacks it the `embedding` output the learned guard needs.

    python -m bot.training.graft MODEL_DIR

Models exported before the guard existed output `logit` and `cam` only. The embedding is the
input of the CAM head (the last feature map) average-pooled to 2 x 2 and flattened, exactly as
`bot.training.model.ExportNet` computes it. The graft adds those two nodes and the output; the
existing outputs are untouched (checked on random inputs), and the card's hash is updated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bot.ml.model_card import load_model_card
from bot.training.export import sha256_file, write_model_card


def graft(path: Path) -> None:
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    if any(o.name == "embedding" for o in model.graph.output):
        return
    producers = {out: node for node in model.graph.node for out in node.output}
    gather = producers["cam"]
    head = producers[gather.input[0]]
    features = head.input[0]
    side = 14 // 2
    model.graph.node.extend(
        [
            helper.make_node(
                "AveragePool",
                [features],
                ["embedding_pooled"],
                kernel_shape=[side, side],
                strides=[side, side],
            ),
            helper.make_node("Flatten", ["embedding_pooled"], ["embedding"], axis=1),
        ]
    )
    model.graph.output.append(
        helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["n", None])
    )
    onnx.checker.check_model(model)
    before = _run(path)
    onnx.save(model, str(path))
    after = _run(path)
    assert all(np.array_equal(a, b) for a, b in zip(before, after[:2], strict=True))


def _run(path: Path) -> list[np.ndarray]:
    import onnxruntime as ort

    x = np.random.default_rng(0).normal(size=(2, 1, 224, 224)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.training.graft")
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    card_obj = load_model_card(args.directory)
    path = args.directory / card_obj.file
    graft(path)
    card = json.loads((args.directory / "model_card.json").read_text(encoding="utf-8"))
    card["sha256"] = sha256_file(path)
    card["size_bytes"] = path.stat().st_size
    card["outputs"] = (
        "`logit` (N,): pneumonia log-odds; `cam` (N, 14, 14): class activation map, `logit` is "
        "its mean; `embedding` (N, 1024): the last feature map pooled to 2 x 2 (for the guard)"
    )
    write_model_card(card, args.directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
