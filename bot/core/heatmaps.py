"""Heatmap file names: one scheme for the Slack upload, the shell's folder and `cxr classify`.

`chest.jpeg` → `chest-heatmap.png`. Two images may share a name (the same file name from two
folders, or one image posted twice), so each caller passes the names it has already used
and gets `chest-heatmap-2.png`, `-3`… instead of a second file under the first one's name.
"""

from __future__ import annotations

from collections.abc import Collection

SUFFIX = "-heatmap.png"


def heatmap_name(image_name: str, taken: Collection[str] = ()) -> str:
    """The heatmap's file name for an image called `image_name`, not one of `taken`."""
    base = image_name.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return distinct_name(f"{stem or 'image'}{SUFFIX}", taken)


def distinct_name(name: str, taken: Collection[str]) -> str:
    """`name`, or `name` with `-2`, `-3`… before its extension: the first not in `taken`."""
    if name not in taken:
        return name
    stem, dot, extension = name.rpartition(".") if "." in name else (name, "", "")
    number = 2
    while f"{stem}-{number}{dot}{extension}" in taken:
        number += 1
    return f"{stem}-{number}{dot}{extension}"
