"""`cxr classify` and `cxr evaluate` on synthetic files, through the bundled model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot.cli import main
from bot.ml.model_card import load_model_card
from tests import synthetic

_CARD = load_model_card()
LOCAL_MODEL = f"local {_CARD.name} {_CARD.version}"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {
        "xray.jpg": synthetic.jpeg_bytes(synthetic.chest_xray(1, size=(600, 500))),
        "xray16.png": synthetic.png16_bytes(synthetic.chest_xray(2, size=(400, 400))),
        "rotated.jpg": synthetic.jpeg_bytes(synthetic.chest_xray(3), exif_orientation=6),
        "cat.jpg": synthetic.jpeg_bytes(synthetic.color_photo()),
        "letter.png": synthetic.png_bytes(synthetic.document()),
        "broken.jpg": b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10,
    }
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in made}


def test_classify_prints_file_label_confidence_model_and_time(files, capsys):
    paths = [str(files[n]) for n in ("xray.jpg", "xray16.png", "rotated.jpg")]
    assert main(["classify", *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for path, line in zip(paths, lines, strict=True):
        name, label, confidence, model, ms = line.split("\t")
        assert name == path
        assert label in {"Normal", "Pneumonia", "Uncertain"}
        assert confidence.endswith("%") and 50.0 <= float(confidence[:-1]) <= 100.0
        assert model == LOCAL_MODEL
        assert ms.endswith(" ms")


def test_classify_json_and_heatmaps(files, tmp_path, capsys):
    out = tmp_path / "maps"
    assert main(["classify", str(files["xray.jpg"]), "--json", "--heatmap", str(out)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["file"] == str(files["xray.jpg"])
    assert row["label"] in {"Normal", "Pneumonia", "Uncertain"}
    assert set(row["scores"]) == {"Normal", "Pneumonia"}
    assert row["model"] == LOCAL_MODEL and row["ms"] > 0
    heatmap = Image.open(row["heatmap"])
    assert heatmap.format == "PNG" and heatmap.width == 600  # the film's own size, legend below


def test_bad_files_get_one_friendly_line_each_and_a_failing_exit(files, capsys):
    names = ["cat.jpg", "letter.png", "broken.jpg", "missing.jpg", "xray.jpg"]
    paths = [str(files.get(n, files["xray.jpg"].parent / n)) for n in names]
    assert main(["classify", *paths]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 4
    assert "doesn't look like a chest X-ray" in errors[0]
    assert "doesn't look like a chest X-ray" in errors[1]
    assert "couldn't read this image" in errors[2]
    assert "missing.jpg" in errors[3] and "can't read this file" in errors[3]
    assert "Traceback" not in captured.err
    assert len(captured.out.strip().splitlines()) == 1  # the good file still got its line


def test_classify_json_reports_errors_too(files, capsys):
    assert main(["classify", "--json", str(files["cat.jpg"])]) == 1
    (row,) = json.loads(capsys.readouterr().out)
    assert row["code"] == "not_a_chest_xray" and "chest X-ray" in row["error"]


def test_evaluate_prints_metrics_and_writes_a_report_and_a_figure(tmp_path, capsys):
    data = tmp_path / "test"
    for folder, pneumonia in (("Normal", False), ("PNEUMONIA", True)):
        (data / folder).mkdir(parents=True)
        for seed in range(4):
            image = synthetic.chest_xray(seed, size=(300, 260), pneumonia=pneumonia)
            (data / folder / f"{seed}.jpeg").write_bytes(synthetic.jpeg_bytes(image))
    out = tmp_path / "report"
    assert main(["evaluate", str(data), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for word in ("accuracy", "sensitivity", "specificity", "precision", "F1", "ROC AUC", "ECE"):
        assert word in text
    assert "confusion matrix" in text
    report = json.loads((out / "evaluation.json").read_text())
    assert report["n"] == 8 and report["normal"] == 4 and report["pneumonia"] == 4
    assert sum(map(sum, report["confusion_matrix"])) == 8
    assert len(report["predictions"]) == 8
    figure = Image.open(out / "evaluation.png")
    assert figure.format == "PNG" and figure.size[0] > figure.size[1]


def test_evaluate_the_validation_split_only(tmp_path, capsys):
    data = tmp_path / "train"
    for folder, name, pneumonia in (
        ("NORMAL", "IM-{p:04d}-0001", False),
        ("PNEUMONIA", "person{p}_virus_1", True),
    ):
        (data / folder).mkdir(parents=True)
        for p in range(7):
            image = synthetic.chest_xray(p, size=(256, 256), pneumonia=pneumonia)
            (data / folder / f"{name.format(p=p)}.jpeg").write_bytes(synthetic.jpeg_bytes(image))
    out = tmp_path / "report"
    assert main(["evaluate", str(data), "--validation-split", "--out", str(out)]) == 0
    assert "(validation split)" in capsys.readouterr().out
    report = json.loads((out / "evaluation.json").read_text())
    assert report["validation_split"] is True
    assert report["normal"] == 1 and report["pneumonia"] == 1  # 15% of 7 patients per class


def test_evaluate_needs_class_folders(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "NORMAL" in capsys.readouterr().err


def test_missing_model_file_is_reported_not_raised(files, tmp_path, capsys):
    assert main(["classify", str(files["xray.jpg"]), "--model", str(tmp_path / "x.onnx")]) == 2
    assert "local model not found" in capsys.readouterr().err


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert "classify" in result.stdout and "evaluate" in result.stdout


def test_run_time_never_imports_torch():
    code = (
        "import sys, bot.cli, bot.adapters.onnx_classifier, bot.core.xray_guard, "
        "bot.training.data; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


def test_train_without_torch_says_how_to_get_it(monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "torch" or m.startswith("bot.training.")]:
        if name != "bot.training.data":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # "import torch" fails
    assert main(["train", "--limit", "2"]) == 2
    assert "pip install -e '.[train]'" in capsys.readouterr().err
