"""Images that are not upright chest X-rays, for fitting and measuring the learned guard.

Four kinds, each split by *source* into a fitting part and a held-out part, so that the guard
is measured on photos, textures and documents it never saw:

- `photo`: the sample images that scikit-image, matplotlib and scikit-learn ship inside their
  wheels (no download), in grayscale, randomly cropped, scaled and tone-mapped;
- `texture`: synthetic noise at several scales, stripes, checks, gradients and blobs;
- `text`: rendered documents (lines of words, tables, forms), dark on light and light on dark;
- film transforms (`film_transforms`): inverted, turned on either side, upside down.

Needs the train extra (scikit-image, matplotlib, scikit-learn); the bot never imports this.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

KINDS = ("film", "other", "inverted", "sideways", "upside_down")  # the guard's classes


@dataclass(frozen=True)
class Negative:
    kind: str  # photo, texture, text
    source: str
    image: Image.Image


def _skimage(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        from skimage import data

        return _to_image(getattr(data, name)())

    return load


def _file(package: str, *parts: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        module = __import__(package, fromlist=["_"])
        return Image.open(Path(module.__file__).parent.joinpath(*parts)).convert("L")

    return load


def _matplotlib_mri() -> Image.Image:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "s1045.ima.gz"
    raw = np.frombuffer(gzip.decompress(path.read_bytes()), np.uint16).reshape(256, 256)
    return _to_image(raw)


def _matplotlib_dem(name: str, key: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / name
        return _to_image(np.load(path)[key])

    return load


def _to_image(array: np.ndarray) -> Image.Image:
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=2) if a.shape[-1] in (3, 4) else a[0]
    low, high = np.percentile(a, [0.5, 99.5])
    a = np.clip((a - low) / max(high - low, 1e-9), 0, 1)
    return Image.fromarray((a * 255).astype(np.uint8), mode="L")


# Sources by name; the held-out ones are only measured, never fitted.
PHOTO_SOURCES: dict[str, Callable[[], Image.Image]] = {
    "astronaut": _skimage("astronaut"),
    "camera": _skimage("camera"),
    "coffee": _skimage("coffee"),
    "coins": _skimage("coins"),
    "hubble": _skimage("hubble_deep_field"),
    "moon": _skimage("moon"),
    "motorcycle": _file("skimage", "data", "motorcycle_left.png"),
    "rocket": _skimage("rocket"),
    "retina": _skimage("retina"),
    "cell": _skimage("cell"),
    "grace_hopper": _file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"),
    "china": _file("sklearn", "datasets", "images", "china.jpg"),
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "page": _skimage("page"),
    "jacksboro_dem": _matplotlib_dem("jacksboro_fault_dem.npz", "elevation"),
    # held out
    "chelsea": _skimage("chelsea"),
    "ihc": _skimage("immunohistochemistry"),
    "clock": _skimage("clock"),
    "microaneurysms": _skimage("microaneurysms"),
    "gravel": _skimage("gravel"),
    "text": _skimage("text"),
    "phantom": _skimage("shepp_logan_phantom"),
    "mri_head": _matplotlib_mri,
    "flower": _file("sklearn", "datasets", "images", "flower.jpg"),
    "topobathy": _matplotlib_dem("topobathy.npz", "topo"),
}
HELD_OUT = frozenset(
    {
        "chelsea",
        "ihc",
        "clock",
        "microaneurysms",
        "gravel",
        "text",
        "phantom",
        "mri_head",
        "flower",
        "topobathy",
    }
)


def _load(name: str) -> Image.Image | None:
    try:
        image = PHOTO_SOURCES[name]()
    except Exception:  # a sample missing from this version of the package
        return None
    return image


def _faces(held_out: bool) -> Iterator[tuple[str, Image.Image]]:
    """scikit-image's small face crops (lfw_subset), tiled into photo-like collages."""
    from skimage import data

    faces = data.lfw_subset()
    faces = faces[100:] if held_out else faces[:100]
    for i in range(0, len(faces) - 3, 4):
        top = np.hstack([faces[i], faces[i + 1]])
        bottom = np.hstack([faces[i + 2], faces[i + 3]])
        yield "faces", _to_image(np.vstack([top, bottom])).resize((200, 200))


def _variant(image: Image.Image, rng: random.Random) -> Image.Image:
    """A random crop (40-100% a side), aspect, size and tone curve of a grayscale image."""
    w, h = image.size
    cw, ch = int(w * rng.uniform(0.4, 1.0)), int(h * rng.uniform(0.4, 1.0))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    crop = image.crop((left, top, left + cw, top + ch))
    side = rng.choice([224, 320, 512, 800])
    crop = crop.resize((side, int(side * rng.uniform(0.75, 1.33))), Image.Resampling.BILINEAR)
    gamma = np.exp(rng.uniform(-0.5, 0.5))
    lut = [round(255 * (i / 255) ** gamma) for i in range(256)]
    crop = crop.point(lut)
    if rng.random() < 0.3:
        crop = crop.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    if rng.random() < 0.2:
        crop = ImageOps.invert(crop)
    return crop


def photos(held_out: bool, per_source: int, seed: int = 0) -> list[Negative]:
    rng = random.Random(seed + held_out)
    out = []
    for name in PHOTO_SOURCES:
        if (name in HELD_OUT) != held_out:
            continue
        base = _load(name)
        if base is None:
            continue
        base = base if base.mode == "L" else base.convert("L")
        out += [Negative("photo", name, _variant(base, rng)) for _ in range(per_source)]
    for name, image in _faces(held_out):
        out.append(Negative("photo", name, _variant(image, rng)))
    return out


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    small = max(2, int(size / scale))
    noise = rng.random((small, small)).astype(np.float32)
    return np.asarray(
        Image.fromarray(noise, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    )


def texture(rng: np.random.Generator, size: int = 320) -> Image.Image:
    """One synthetic grayscale texture: multi-scale noise, stripes, checks, blobs, gradients."""
    kind = int(rng.integers(6))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == 0:  # fractal-ish noise
        a = sum(_smooth_noise(rng, size, s) / (i + 1) for i, s in enumerate([64, 24, 8, 3]))
    elif kind == 1:  # stripes at an angle, with noise
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(4, 40)
        a = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
        a = a + rng.uniform(0, 1) * _smooth_noise(rng, size, 4)
    elif kind == 2:  # checks or a grid
        n = int(rng.integers(3, 20))
        a = ((xx * n).astype(int) + (yy * n).astype(int)) % 2 + 0.3 * rng.random((size, size))
    elif kind == 3:  # blobs
        a = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(3, 30))):
            cx, cy, r = rng.random(), rng.random(), rng.uniform(0.02, 0.3)
            a += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)) * rng.uniform(-1, 1)
    elif kind == 4:  # a gradient with smooth noise
        a = xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1) + 0.5 * _smooth_noise(rng, size, 32)
    else:  # white noise, blurred a little
        noise = _to_image(rng.random((size, size)))
        return noise.filter(ImageFilter.GaussianBlur(rng.uniform(0, 3)))
    return _to_image(a)


_WORDS = [
    "patient",
    "report",
    "findings",
    "the",
    "of",
    "and",
    "chest",
    "lung",
    "clear",
    "no",
    "acute",
    "result",
    "normal",
    "page",
    "date",
    "signature",
    "table",
    "total",
    "invoice",
    "number",
    "figure",
    "section",
    "summary",
    "dose",
    "review",
    "clinic",
    "x",
    "ray",
    "left",
    "right",
    "view",
    "scan",
    "history",
    "plan",
    "notes",
    "contact",
    "phone",
    "email",
    "2024",
    "12",
    "mg",
    "ml",
]


def document(rng: random.Random, size: tuple[int, int] = (600, 800)) -> Image.Image:
    """One rendered document: text lines, maybe a table and boxes; light or dark background."""
    background = rng.choice([255, 245, 230, 200, 30, 0])
    ink = 0 if background > 128 else rng.choice([220, 255])
    w, h = size if rng.random() < 0.7 else size[::-1]
    image = Image.new("L", (w, h), background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=rng.choice([12, 14, 18, 24, 32]))
    y = rng.randint(10, 60)
    while y < h - 20:
        if rng.random() < 0.15:  # a table row
            x = 20
            for _ in range(rng.randint(2, 6)):
                cw = rng.randint(60, 160)
                draw.rectangle([x, y, x + cw, y + 28], outline=ink)
                draw.text((x + 4, y + 4), rng.choice(_WORDS), fill=ink, font=font)
                x += cw
            y += 30
            continue
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 14)))
        draw.text((rng.randint(10, 40), y), line, fill=ink, font=font)
        y += rng.randint(18, 48)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return image


def synthetic(held_out: bool, count: int, seed: int = 0) -> list[Negative]:
    """`count` textures and `count` documents; held-out ones from other seeds."""
    base = seed * 2 + (1_000_003 if held_out else 0)
    rng = np.random.default_rng(base)
    prng = random.Random(base)
    out = [Negative("texture", "synthetic", texture(rng)) for _ in range(count)]
    out += [Negative("text", "rendered", document(prng)) for _ in range(count)]
    return out


def film_transforms(film: Image.Image) -> list[tuple[str, str, Image.Image]]:
    """(guard class, transform, image) for one upright film: what the guard must refuse."""
    return [
        ("inverted", "inverted", ImageOps.invert(film.convert("L"))),
        ("sideways", "rotated 90", film.transpose(Image.Transpose.ROTATE_90)),
        ("sideways", "rotated 270", film.transpose(Image.Transpose.ROTATE_270)),
        ("upside_down", "rotated 180", film.transpose(Image.Transpose.ROTATE_180)),
        ("upside_down", "flipped top to bottom", film.transpose(Image.Transpose.FLIP_TOP_BOTTOM)),
    ]
