"""Class activation map overlays: where in the X-ray the model saw evidence, and how much.

The network's `cam` output (14 x 14) is its pneumonia score per region; the image's logit is
the map's mean. An honest overlay follows the verdict, not the map's own range:

- only the evidence *for* the shown class is drawn (cells above the decision offset for
  Pneumonia, below it for Normal);
- the map's shape is scaled so that its strongest cell equals the verdict's strength,
  2 x |P - 0.5|: a 99% verdict can reach full red, an Uncertain 52% stays almost invisible;
- a legend under the film says which class the map shows and what the colours mean;
- it is drawn at the decoded image's size (the local model decodes up to `MAX_SIDE`).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bot.ml.preprocess import BORDER

MAX_SIDE = 1024  # heatmaps are drawn at the image's own size up to this
MIN_HEAT = 0.1  # below this, the film shows through untouched

# Yellow (weak) through orange to red (strong).
_STOPS = [(0.0, (255, 235, 60)), (0.5, (255, 140, 0)), (1.0, (215, 0, 0))]
_POS = np.array([p for p, _ in _STOPS])
COLORMAP = np.stack(
    [np.interp(np.linspace(0, 1, 256), _POS, [c[i] for _, c in _STOPS]) for i in range(3)], 1
).astype(np.float32)


def evidence_strength(p_class: float) -> float:
    """How strongly the verdict leans to the shown class: 0 at 50%, 1 at 100%."""
    return float(np.clip(2.0 * p_class - 1.0, 0.0, 1.0))


def cam_to_map(
    cam: np.ndarray,
    size: tuple[int, int],
    *,
    strength: float = 1.0,
    offset: float = 0.0,
    border: float = BORDER,
) -> np.ndarray:
    """The evidence of a (h, w) CAM above `offset`, its peak scaled to `strength` (0..1), on an
    image of `size` (width, height). The map covers what the network saw; the trimmed border
    continues its edge. Returns float32 (height, width) in 0..strength."""
    evidence = np.maximum(np.asarray(cam, dtype=np.float32) - offset, 0.0)
    peak = float(evidence.max())
    unit = evidence / peak if peak > 1e-6 else np.zeros_like(evidence)
    unit = unit * np.float32(np.clip(strength, 0.0, 1.0))
    width, height = size
    left, top = round(width * border), round(height * border)
    inner = (max(width - 2 * left, 1), max(height - 2 * top, 1))
    resized = np.asarray(Image.fromarray(unit, mode="F").resize(inner, Image.Resampling.BILINEAR))
    pad = ((top, height - top - inner[1]), (left, width - left - inner[0]))
    return np.clip(np.pad(resized, pad, mode="edge"), 0.0, 1.0).astype(np.float32)


def overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.65) -> Image.Image:
    """The gray image with `heat` (0..1, image-sized) coloured over it, RGB. The colour's
    opacity grows with the heat, so weak evidence stays faint."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)[..., None]
    colour = COLORMAP[np.round(heat * 255).astype(np.uint8)]
    weight = alpha * np.clip((heat - MIN_HEAT) / (1 - MIN_HEAT), 0.0, 1.0)[..., None]
    blended = gray * (1 - weight) + colour * weight
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def legend(width: int, label: str, confidence: float) -> Image.Image:
    """A strip for under the film: which class the map shows, and what the colours mean."""
    size = max(11, min(22, width // 45))
    height = 3 * size + 8
    strip = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(strip)
    font = _font(size)
    draw.text(
        (6, 3),
        f"Heatmap: where the model saw signs of {label.upper()} ({confidence:.0%}).",
        fill=(235, 235, 235),
        font=font,
    )
    bar_w = max(60, min(240, width // 3))
    bar = np.repeat(COLORMAP[None], size, axis=0)
    ramp = Image.fromarray(bar.astype(np.uint8), mode="RGB").resize((bar_w, size))
    strip.paste(ramp, (6, 4 + size + 2))
    draw.text(
        (12 + bar_w, 3 + size + 2),
        "yellow weak, red strong; faint overall = weak verdict. A guide, not a finding.",
        fill=(200, 200, 200),
        font=font,
    )
    return strip


def heatmap_png(
    image: Image.Image,
    cam: np.ndarray,
    *,
    label: str = "Pneumonia",
    p_class: float = 1.0,
    offset: float = 0.0,
    alpha: float = 0.65,
) -> bytes:
    """PNG bytes: the evidence for `label` (`cam` oriented so that higher means more of it,
    `offset` its decision point) over `image` at its own size up to `MAX_SIDE`, with the
    legend beneath. `p_class`: the verdict's calibrated probability of `label`."""
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
    heat = cam_to_map(cam, image.size, strength=evidence_strength(p_class), offset=offset)
    drawn = overlay(image, heat, alpha)
    key = legend(drawn.width, label, p_class)
    result = Image.new("RGB", (drawn.width, drawn.height + key.height))
    result.paste(drawn, (0, 0))
    result.paste(key, (0, drawn.height))
    buffer = io.BytesIO()
    result.save(buffer, format="PNG", compress_level=1)  # fast
    return buffer.getvalue()
