"""The training folder and the patient-level validation split (no torch here).

The folder is laid out like the Rekognition S3 dataset: one subfolder per class, `NORMAL/` and
`PNEUMONIA/` in any case. File names carry the patient (see ../shared/data/README.md):
`person1234_bacteria_567.jpeg` -> `person1234`, `IM-0123-0001.jpeg` -> `IM-0123`,
`NORMAL2-IM-0456-0001.jpeg` -> `NORMAL2-IM-0456`; images exported from Slack reviews
(`cxr export`) are named `slack-<message>-<file>.png` -> `slack-<message>`. All images of one child go to the same side
of the split, so validation never sees a child the model trained on.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".dicom"}
)  # DICOM too: every image goes through bot.core.imaging.decode
CLASS_NAMES = ("NORMAL", "PNEUMONIA")  # label 0, label 1
_PATIENT = re.compile(
    r"^(person\d+)_|^((?:normal\d*-)?im-\d+)(?:-|$)|^(slack-[0-9a-f]{16})-", re.IGNORECASE
)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 normal, 1 pneumonia
    patient: str


def patient_id(file_name: str) -> str:
    """The patient a file belongs to; a name that follows no known pattern is its own patient."""
    stem = Path(file_name).stem
    match = _PATIENT.match(stem)
    if not match:
        return stem.casefold()
    return next(group for group in match.groups() if group).casefold()


def class_folders(root: Path) -> dict[int, Path]:
    """The NORMAL and PNEUMONIA folders of `root`, matched case-insensitively."""
    found: dict[int, Path] = {}
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.name.upper() in CLASS_NAMES:
                found[CLASS_NAMES.index(child.name.upper())] = child
    missing = [name for i, name in enumerate(CLASS_NAMES) if i not in found]
    if missing:
        raise FileNotFoundError(
            f"{root} must hold one folder per class ({', '.join(CLASS_NAMES)}, any case); "
            f"missing: {', '.join(missing)}"
        )
    return found


def list_samples(root: Path) -> list[Sample]:
    """Every image under `root`/NORMAL and `root`/PNEUMONIA, sorted by path."""
    samples = []
    for label, folder in class_folders(Path(root)).items():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(path, label, patient_id(path.name)))
    return sorted(samples, key=lambda s: str(s.path))


def split_by_patient(
    samples: list[Sample], val_fraction: float = 0.15, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """(train, validation): a seeded shuffle of the patients of each class, about
    `val_fraction` of each class's patients going to validation. A patient with images in both
    classes counts with the class of most of its images."""
    by_patient: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_patient[sample.patient].append(sample)
    per_class: dict[int, list[str]] = defaultdict(list)
    for patient, items in sorted(by_patient.items()):
        majority = round(sum(s.label for s in items) / len(items))
        per_class[majority].append(patient)
    rng = random.Random(seed)
    val_patients: set[str] = set()
    for label in sorted(per_class):
        patients = per_class[label]
        rng.shuffle(patients)
        val_patients.update(patients[: round(len(patients) * val_fraction)])
    train = [s for s in samples if s.patient not in val_patients]
    val = [s for s in samples if s.patient in val_patients]
    return train, val


_SERIES = re.compile(r"^(person)(\d+)_|^((?:normal\d*-)?im-)(\d+)(?:-|$)", re.IGNORECASE)


def patient_series(file_name: str) -> tuple[str, int]:
    """(series, number) of a file's patient: `person1234_…` -> ("person", 1234),
    `NORMAL2-IM-0456-…` -> ("normal2-im-", 456); a name of no known pattern -> (stem, 0).
    Consecutive numbers in a series were admitted one after another."""
    stem = Path(file_name).stem
    match = _SERIES.match(stem)
    if not match:
        return stem.casefold(), 0
    if match.group(1):
        return match.group(1).casefold(), int(match.group(2))
    return match.group(3).casefold(), int(match.group(4))


def split_by_patient_range(
    samples: list[Sample], val_fraction: float = 0.15
) -> tuple[list[Sample], list[Sample]]:
    """(train, validation) by admission order: within each class and each file-name series,
    the patients with the highest numbers (about `val_fraction` of them) go to validation.

    A harder check than a random patient split: validation comes from a later stretch of
    admissions, so drift in machines, exposure and processing over time shows up as a drop,
    where a random split spreads every period over both sides. It holds out the *latest*
    patients of the training split only; nothing here comes from, or imitates, the dataset's
    test split."""
    by_patient: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_patient[sample.patient].append(sample)
    groups: dict[tuple[int, str], list[tuple[int, str]]] = defaultdict(list)
    for patient, items in by_patient.items():
        majority = round(sum(s.label for s in items) / len(items))
        series, number = patient_series(items[0].path.name)
        groups[(majority, series)].append((number, patient))
    val_patients: set[str] = set()
    for members in groups.values():
        members.sort()
        held = round(len(members) * val_fraction)
        val_patients.update(patient for _, patient in members[len(members) - held :])
    train = [s for s in samples if s.patient not in val_patients]
    val = [s for s in samples if s.patient in val_patients]
    return train, val


ACQUISITION_FEATURES = ("mean", "contrast", "midtone", "sharpness", "dark_border")


def acquisition_stats(path: Path) -> list[float]:
    """How a film was exposed and processed, not what it shows: mean grey, contrast, where the
    median sits between the 5th and 95th percentiles (tone curve), edge sharpness relative to
    contrast (edge enhancement, noise), and the share of near-black pixels (collimation and
    borders)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        a = np.asarray(image.convert("L"), dtype=np.float32)
    p5, p50, p95 = np.percentile(a, [5, 50, 95])
    laplace = np.abs(4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:])
    std = float(a.std()) + 1e-6
    return [
        float(a.mean()),
        std,
        float((p50 - p5) / (p95 - p5 + 1e-6)),
        float(laplace.mean()) / std,
        float((a < 20).mean()),
    ]


def _logistic_fit(x, y, steps: int = 25, ridge: float = 1e-2):
    """Plain Newton-Raphson logistic regression (numpy; a handful of features)."""
    import numpy as np

    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    return w


def split_by_atypical_acquisition(
    samples: list[Sample], val_fraction: float = 0.15, stats: dict[Path, list[float]] | None = None
) -> tuple[list[Sample], list[Sample]]:
    """(train, validation): the patients whose films look, by exposure and processing alone,
    most like the *other* class go to validation (about `val_fraction` of each class).

    In this dataset the classes differ in acquisition as well as in the lungs (normal films
    have more contrast, sharper edges and darker borders on average). A model can lean on that
    shortcut; it breaks on films from another machine or hospital. A classifier that sees only
    the five `acquisition_stats` ranks each patient by how typical its films are for its own
    class; the least typical are held out. A model that reads exposure instead of the lungs
    scores badly here. Built from the training split's own statistics only."""
    import numpy as np

    stats = stats if stats is not None else {s.path: acquisition_stats(s.path) for s in samples}
    x = np.array([stats[s.path] for s in samples], dtype=np.float64)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    y = np.array([s.label for s in samples], dtype=np.float64)
    w = _logistic_fit(x, y)
    p_pneumonia = 1 / (1 + np.exp(-(np.hstack([x, np.ones((len(x), 1))]) @ w)))
    typical: dict[str, list[float]] = defaultdict(list)
    for sample, p in zip(samples, p_pneumonia, strict=True):
        typical[sample.patient].append(float(p if sample.label == 1 else 1 - p))
    by_patient: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_patient[sample.patient].append(sample)
    per_class: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for patient, items in by_patient.items():
        majority = round(sum(s.label for s in items) / len(items))
        per_class[majority].append((float(np.mean(typical[patient])), patient))
    val_patients: set[str] = set()
    for members in per_class.values():
        members.sort()
        val_patients.update(p for _, p in members[: round(len(members) * val_fraction)])
    train = [s for s in samples if s.patient not in val_patients]
    val = [s for s in samples if s.patient in val_patients]
    return train, val


def three_way_split(
    samples: list[Sample], val_fraction: float = 0.15, seed: int = 0
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, patient-level validation, atypical-acquisition validation), disjoint by
    patient: the atypical films are held out first, then a seeded patient-level split of the
    rest. One training run is then scored on both validation splits."""
    rest, atypical = split_by_atypical_acquisition(samples, val_fraction)
    train, val = split_by_patient(rest, val_fraction / (1 - val_fraction), seed)
    return train, val, atypical
