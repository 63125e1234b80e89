"""The training folder and the patient-level validation split (no torch here).

The folder is laid out like the Rekognition S3 dataset: one subfolder per class, `NORMAL/` and
`PNEUMONIA/` in any case. File names carry the patient (see ../shared/data/README.md):
`person1234_bacteria_567.jpeg` -> `person1234`, `IM-0123-0001.jpeg` -> `IM-0123`,
`NORMAL2-IM-0456-0001.jpeg` -> `NORMAL2-IM-0456`. All images of one child go to the same side
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
_PATIENT = re.compile(r"^(person\d+)_|^((?:normal\d*-)?im-\d+)(?:-|$)", re.IGNORECASE)


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
    return (match.group(1) or match.group(2)).casefold()


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
