"""`cxr classify` and `cxr evaluate` on synthetic files, through the bundled model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot.cli import build_parser, main
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
        top, percent = confidence.split(" ")  # the class the confidence is for, always
        assert top in {"Normal", "Pneumonia"} and label in {top, "Uncertain"}
        assert percent.endswith("%") and 50.0 <= float(percent[:-1]) <= 100.0
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
    assert "doesn't look like a chest X-ray" in errors[1]  # names not found come first
    assert "doesn't look like a chest X-ray" in errors[2]
    assert "couldn't read this image" in errors[3]
    assert errors[0].endswith("missing.jpg: no such file or folder")
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


def test_a_model_that_is_not_an_exported_onnx_file_is_refused_by_the_parser(
    files, tmp_path, capsys
):
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "m.onnx").write_bytes(b"onnx")
    cases = {
        str(tmp_path / "x.onnx"): "no such file",
        str(tmp_path / "report.pdf"): "is not an ONNX model",
        str(tmp_path / "alone" / "m.onnx"): "has no model_card.json beside it",
    }
    for model, message in cases.items():
        with pytest.raises(SystemExit) as exit_:
            main(["classify", str(files["xray.jpg"]), "--model", model])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "argument --model" in err and message in err and "Errno" not in err


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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classify", "x.jpg", "--threshold", "2"], "must be between 0.5 and 1"),
        (["classify", "x.jpg", "--threshold", "0.3"], "must be between 0.5 and 1"),
        (["classify", "x.jpg", "--threshold", "high"], "'high' is not a number"),
        (["classify", "x.jpg", "--threads", "0"], "must be at least 1"),
        (["evaluate", "d", "--threshold", "0.3"], "must be between 0.5 and 1"),
        (["evaluate", "d", "--threshold", "nan"], "out of range"),
        (["train", "--epochs", "0"], "must be at least 1"),
        (["train", "--batch-size", "2.5"], "'2.5' is not a whole number"),
        (["train", "--lr", "0"], "must be above 0"),
        (["train", "--val-fraction", "1"], "must be between 0 and 1 (0, 1)"),
        (["train", "--ema", "1"], "must be between 0 and 1 [0, 1)"),
        (["train", "--weight-decay", "-1"], "must be at least 0"),
        (["train", "--blocks", "1", "0"], "must be at least 1"),
        (["train", "--limit", "-3"], "must be at least 1"),
        (["classify"], "the following arguments are required: FILE|DIR"),
    ],
)
def test_the_parser_refuses_out_of_range_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_parser_takes_the_edges_of_each_range():
    args = build_parser().parse_args(["classify", "x.jpg", "--threshold", "0.5", "--threads", "1"])
    assert args.threshold == 0.5 and args.threads == 1 and args.files == ["x.jpg"]
    args = build_parser().parse_args(["evaluate", "d", "--threshold", "1"])
    assert args.threshold == 1.0 and args.dir == Path("d")
    args = build_parser().parse_args(["train", "--ema", "0", "--val-fraction", "0.2"])
    assert args.ema == 0.0 and args.val_fraction == 0.2 and args.blocks == [1, 1, 2]


def test_classify_takes_a_folder_and_class_folders_one_level_down(tmp_path, capsys):
    for folder, seed in (("NORMAL", 1), ("PNEUMONIA", 2)):
        (tmp_path / "set" / folder).mkdir(parents=True)
        image = synthetic.chest_xray(seed, size=(300, 300))
        (tmp_path / "set" / folder / "same.jpeg").write_bytes(synthetic.jpeg_bytes(image))
    maps = tmp_path / "maps"
    assert main(["classify", str(tmp_path / "set"), "--heatmap", str(maps)]) == 0
    captured = capsys.readouterr()
    assert "taking those in NORMAL/ (1), PNEUMONIA/ (1)" in captured.err
    lines = captured.out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        str(tmp_path / "set" / "NORMAL" / "same.jpeg"),
        str(tmp_path / "set" / "PNEUMONIA" / "same.jpeg"),
    ]
    # the same name twice: two heatmaps, named as the bot names its Slack uploads
    assert [line.split("\t")[-1] for line in lines] == [
        str(maps / "same-heatmap.png"),
        str(maps / "same-heatmap-2.png"),
    ]


def test_classify_an_empty_folder_says_so(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["classify", str(tmp_path / "empty")]) == 1
    assert "is empty: no images to screen" in capsys.readouterr().err


def test_evaluate_a_missing_folder_says_no_such_folder(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "one folder per class" not in err


def test_evaluate_checks_out_before_the_work(tmp_path, capsys, monkeypatch):
    data = tmp_path / "test"
    for folder in ("NORMAL", "PNEUMONIA"):
        (data / folder).mkdir(parents=True)
        (data / folder / "a.jpeg").write_bytes(synthetic.jpeg_bytes(synthetic.chest_xray(1)))
    (tmp_path / "a-file").write_text("")
    import bot.cli

    monkeypatch.setattr(bot.cli, "_load_classifier", lambda *a, **k: pytest.fail("ran anyway"))
    assert main(["evaluate", str(data), "--out", str(tmp_path / "a-file" / "reports")]) == 2
    assert "can't write to --out" in capsys.readouterr().err


def test_evaluate_report_keeps_only_the_roc_corners_and_the_figure_marks_the_operating_point(
    tmp_path, capsys
):
    from bot.cli import roc_corners

    fpr, tpr = roc_corners([0, 0, 0, 0, 0.5, 0.5, 1, 1], [0, 0.2, 0.4, 0.6, 0.6, 0.6, 1, 1])
    assert list(fpr) == [0, 0, 0.5, 1] and list(tpr) == [0, 0.6, 0.6, 1]
    data = tmp_path / "test"
    for folder, pneumonia in (("NORMAL", False), ("PNEUMONIA", True)):
        (data / folder).mkdir(parents=True)
        for seed in range(6):
            image = synthetic.chest_xray(seed, size=(256, 256), pneumonia=pneumonia)
            (data / folder / f"{seed}.jpeg").write_bytes(synthetic.jpeg_bytes(image))
    assert main(["evaluate", str(data), "--out", str(tmp_path / "r")]) == 0
    roc = json.loads((tmp_path / "r" / "evaluation.json").read_text())["roc"]
    points = list(zip(roc["fpr"], roc["tpr"], strict=True))
    assert len(points) == len(set(points))  # no point twice
    for a, b, c in zip(points, points[1:], points[2:], strict=False):
        cross = (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])
        assert abs(cross) > 1e-12  # a corner, not a point along a straight run


def test_help_keeps_the_commands_on_their_own_lines():
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--help"], capture_output=True, text=True, check=False
    )
    lines = result.stdout.splitlines()
    for command in ("cxr classify", "cxr evaluate", "cxr train"):
        assert sum(line.strip().startswith(command) for line in lines) == 1


def test_output_cut_short_by_head_ends_quietly(files):
    paths = " ".join(str(files[n]) for n in ("xray.jpg", "xray16.png", "rotated.jpg") * 30)
    result = subprocess.run(
        f"{sys.executable} -m bot.cli classify {paths} | true",  # a reader that never reads
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stderr == ""
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_classify_and_evaluate_read_dicom_even_without_an_extension(tmp_path, capsys):
    from tests.synthetic_dicom import dicom_bytes, xray_values

    data = tmp_path / "set"
    for folder, pneumonia in (("NORMAL", False), ("PNEUMONIA", True)):
        (data / folder).mkdir(parents=True)
        for seed in range(2):
            image = synthetic.chest_xray(seed, size=(256, 256), pneumonia=pneumonia)
            (data / folder / f"{seed}.jpeg").write_bytes(synthetic.jpeg_bytes(image))
        (data / folder / "IM000001.dcm").write_bytes(
            dicom_bytes(xray_values(7, bits=12), WindowCenter=2000, WindowWidth=3000)
        )
    pacs = tmp_path / "IM000002"  # as PACS exports name them
    pacs.write_bytes(
        dicom_bytes(xray_values(8, bits=16), bits_stored=16, photometric="MONOCHROME1")
    )
    assert main(["classify", str(pacs), str(data / "NORMAL" / "IM000001.dcm")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        str(pacs),
        str(data / "NORMAL" / "IM000001.dcm"),
    ]
    assert main(["evaluate", str(data), "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "evaluation.json").read_text())
    assert report["n"] == 6 and not report["unreadable"]
    assert sum(row["file"].endswith(".dcm") for row in report["predictions"]) == 2
