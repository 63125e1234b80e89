"""The folder → manifest rules (pure), image headers from leading bytes, the summary file."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from PIL import Image

from bot.adapters.rekognition_models import parse_summary
from bot.adapters.s3_images import read_header
from bot.core.labels import Label
from bot.core.training_data import (
    ImageHeader,
    LabelledImage,
    Problem,
    S3Uri,
    StoredObject,
    image_problems,
    layout_problems,
    manifest,
    scan,
)
from bot.slack.fleet import problem as worded
from tests.synthetic import chest_xray, jpeg_bytes, png_bytes
from tests.test_lifecycle_support import summary_json

SOURCE = S3Uri.parse("s3://cxr-data/xrays")


def objects(*names: str, size: int = 1000) -> list[StoredObject]:
    return [StoredObject(f"xrays/{name}", size) for name in names]


def tree(normal: int = 10, pneumonia: int = 10) -> list[StoredObject]:
    return objects(
        *(f"Normal/n{i}.jpeg" for i in range(normal)),
        *(f"Pneumonia/p{i}.png" for i in range(pneumonia)),
    )


@pytest.mark.parametrize(
    ("text", "bucket", "prefix"),
    [
        ("s3://cxr-data/xrays", "cxr-data", "xrays/"),
        ("s3://cxr-data/xrays/", "cxr-data", "xrays/"),
        ("s3://cxr-data/a/b", "cxr-data", "a/b/"),
        ("s3://cxr-data", "cxr-data", ""),
        ("<s3://cxr-data/x>", "cxr-data", "x/"),
    ],
)
def test_s3_locations_parse(text, bucket, prefix):
    uri = S3Uri.parse(text)
    assert (uri.bucket, uri.prefix) == (bucket, prefix)


@pytest.mark.parametrize("text", ["https://cxr-data/x", "s3://", "s3://UPPER/x", "cxr-data/x"])
def test_bad_s3_locations_are_refused(text):
    with pytest.raises(ValueError):
        S3Uri.parse(text)


def test_folder_names_are_the_labels_case_insensitively_and_deeper_folders_fold_in():
    found = scan(
        SOURCE,
        [
            *objects(
                "NORMAL/a.jpeg", "normal/b.JPG", "Pneumonia/bacteria/c.png", "Pneumonia/d.jpg"
            ),
            StoredObject("xrays/Normal/", 0),
            StoredObject("xrays/.DS_Store", 10),
        ],
    )
    assert {(i.key, i.label) for i in found.images} == {
        ("xrays/NORMAL/a.jpeg", Label.NORMAL),
        ("xrays/normal/b.JPG", Label.NORMAL),
        ("xrays/Pneumonia/bacteria/c.png", Label.PNEUMONIA),
        ("xrays/Pneumonia/d.jpg", Label.PNEUMONIA),
    }
    assert found.total_files == 4  # the folder marker and .DS_Store are not files to train on


def test_an_empty_prefix_is_refused():
    [problem] = layout_problems(scan(SOURCE, []))
    assert problem == Problem("empty", source="s3://cxr-data/xrays/")


def test_one_label_is_refused_naming_the_missing_folder():
    [problem] = layout_problems(scan(SOURCE, tree(normal=12, pneumonia=0)))
    assert problem.reason == "one-label" and problem.source == "s3://cxr-data/xrays/"
    assert problem.labels == ("Normal", "Pneumonia") and problem.count == 12  # then the missing


def test_non_images_unknown_folders_and_stray_files_are_listed():
    found = scan(
        SOURCE,
        tree() + objects("Normal/notes.txt", "Normal/scan.dcm", "Covid/c1.jpeg", "readme.md"),
    )
    problems = {p.reason: p.items for p in layout_problems(found)}
    assert problems == {
        "unknown-folders": (("Covid", 1),),
        "unlabelled": (("readme.md",),),
        "non-images": (("Normal/notes.txt",), ("Normal/scan.dcm",)),
    }


def test_too_few_images_per_label_is_refused():
    [problem] = layout_problems(scan(SOURCE, tree(normal=3, pneumonia=20)))
    assert problem == Problem("too-few", (("Normal", 3),), limit=10)


def test_long_lists_are_kept_whole_and_cut_in_the_words():
    found = scan(SOURCE, tree() + objects(*(f"Normal/f{i}.txt" for i in range(25))))
    [problem] = layout_problems(found)
    assert len(problem.items) == 25
    lines = worded(problem).splitlines()
    assert len(lines) == 12 and lines[-1] == "• `… and 15 more`"


def test_images_outside_rekognition_limits_are_listed_with_their_sizes():
    found = scan(
        SOURCE,
        [
            *objects(
                "Normal/ok.jpeg",
                "Normal/tiny.jpeg",
                "Normal/huge.png",
                "Normal/strip.png",
                "Normal/gif.jpeg",
                "Normal/broken.jpeg",
            ),
            StoredObject("xrays/Pneumonia/heavy.jpeg", 16 * 1024 * 1024),
        ],
    )
    headers = {
        "xrays/Normal/ok.jpeg": ImageHeader("JPEG", 1024, 1024),
        "xrays/Normal/tiny.jpeg": ImageHeader("JPEG", 32, 64),
        "xrays/Normal/huge.png": ImageHeader("PNG", 5000, 4000),
        "xrays/Normal/strip.png": ImageHeader("PNG", 4000, 150),
        "xrays/Normal/gif.jpeg": ImageHeader("GIF", 500, 500),
        "xrays/Normal/broken.jpeg": None,
    }
    problems = {p.reason: p.items for p in image_problems(found, headers)}
    assert problems == {
        "unreadable": (("Normal/broken.jpeg",),),
        "wrong-format": (("Normal/gif.jpeg", "GIF"),),
        "too-large": (("Pneumonia/heavy.jpeg", 16 * 1024 * 1024),),
        "outside-limits": (
            ("Normal/tiny.jpeg", 32, 64, False),
            ("Normal/huge.png", 5000, 4000, False),
            ("Normal/strip.png", 4000, 150, True),  # its sides fit; its aspect doesn't
        ),
    }


def test_manifest_lines_follow_the_ground_truth_classification_format():
    images = [
        LabelledImage("xrays/Pneumonia/p 1.png", Label.PNEUMONIA, 10),
        LabelledImage("xrays/Normal/n1.jpeg", Label.NORMAL, 10),
    ]
    text = manifest("cxr-data", images, datetime(2026, 1, 5, 9, 30, 1, 234567, tzinfo=UTC))
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 2
    first = json.loads(lines[0])
    assert first == {
        "source-ref": "s3://cxr-data/xrays/Normal/n1.jpeg",
        "cxr-label": 0,
        "cxr-label-metadata": {
            "confidence": 1,
            "job-name": "labeling-job/cxr-bot",
            "class-name": "Normal",
            "human-annotated": "yes",
            "creation-date": "2026-01-05T09:30:01.234",
            "type": "groundtruth/image-classification",
        },
    }
    second = json.loads(lines[1])
    assert second["source-ref"] == "s3://cxr-data/xrays/Pneumonia/p 1.png"  # keys stay raw
    assert second["cxr-label"] == 1 and second["cxr-label-metadata"]["class-name"] == "Pneumonia"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (jpeg_bytes(chest_xray(size=(300, 200))), ImageHeader("JPEG", 300, 200)),
        (png_bytes(chest_xray(size=(128, 640))), ImageHeader("PNG", 128, 640)),
        (b"GIF89a" + b"\x00" * 20, None),  # too short to read: unreadable
        (b"%PDF-1.7 not an image", None),
    ],
)
def test_headers_come_from_leading_bytes(data, expected):
    assert read_header(data[:4096]) == expected


def test_a_gif_is_reported_as_a_gif():
    buffer = io.BytesIO()
    Image.new("L", (80, 90)).save(buffer, format="GIF")
    assert read_header(buffer.getvalue()) == ImageHeader("GIF", 80, 90)


def test_summary_file_gives_per_label_metrics_in_both_documented_layouts():
    flat = parse_summary(summary_json(0.912))
    assert flat.f1 == pytest.approx(0.912) and flat.test_images == 4 and flat.train_images == 16
    assert [(m.label, m.precision, m.recall) for m in flat.labels] == [
        ("Normal", 0.875, 0.9),
        ("Pneumonia", 0.95, 0.91),
    ]
    nested = summary_json(0.8)
    nested["AggregatedEvaluationResults"] = {"Metrics": {"F1Score": 0.8, "Precision": 0.7}}
    assert parse_summary(nested).f1 == pytest.approx(0.8)
    assert parse_summary("not json at all").labels == ()
