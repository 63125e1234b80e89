"""Image files named on a command line or a shell line: paths, globs and folders.

A folder gives the images directly inside it; a folder with none there but class folders
(`NORMAL/`, `PNEUMONIA/`, as in the usual dataset layout) gives theirs, one level down.
Shared by the local shell and `cxr classify`, so both read a folder the same way.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from bot.core.dicom import MAGIC_OFFSET, is_dicom

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".dicom"}
)
DICOM_HEAD = MAGIC_OFFSET + 4
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")


@dataclass
class Found:
    images: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # words that name no file or folder
    notes: list[str] = field(default_factory=list)  # what a folder held, when not just images


def looks_like_path(word: str) -> bool:
    """A word meant as a path (`~/x`, `./a`, `b/c`, `d.jpeg`, `*.png`), not a word of prose."""
    return (
        "/" in word
        or "\\" in word
        or word.startswith(("~", "."))
        or "*" in word
        or bool(_EXTENSION.search(word))
    )


def is_image_file(path: Path) -> bool:
    """An image by its extension, or a DICOM file by its content (PACS exports such as
    `IM000001` have no extension)."""
    if not path.is_file():
        return False
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with path.open("rb") as file:
            return is_dicom(file.read(DICOM_HEAD))
    except OSError:
        return False


def find_images(words: list[str]) -> Found:
    """Expand each word (a path, a glob or a folder) into image files, in order."""
    found = Found()
    for word in words:
        expanded = os.path.expanduser(word)
        matches = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
        hits = [Path(m) for m in matches if Path(m).exists()]
        if not hits:
            found.missing.append(word)
        for hit in hits:
            if hit.is_dir():
                _folder(hit, found)
            else:
                found.images.append(hit)
    return found


def _folder(folder: Path, found: Found) -> None:
    entries = sorted(folder.iterdir())
    images = [p for p in entries if is_image_file(p)]
    if images:
        found.images.extend(images)
        return
    inner = {
        sub: [p for p in sorted(sub.iterdir()) if is_image_file(p)]
        for sub in entries
        if sub.is_dir() and not sub.name.startswith(".")
    }
    inner = {sub: files for sub, files in inner.items() if files}
    if inner:
        listing = ", ".join(f"{sub.name}/ ({len(files)})" for sub, files in inner.items())
        found.notes.append(f"{folder} holds no images itself; taking those in {listing}.")
        for files in inner.values():
            found.images.extend(files)
        return
    if not entries:
        found.notes.append(f"{folder} is empty: no images to screen.")
        return
    folders = sum(1 for p in entries if p.is_dir())
    others = len(entries) - folders
    parts = [f"{others} other file{'s' * (others != 1)}"] if others else []
    if folders:
        parts.append(f"{folders} folder{'s' * (folders != 1)} without images")
    found.notes.append(
        f"{folder} holds no images ({' and '.join(parts)}). I read "
        f"{', '.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))} files."
    )
