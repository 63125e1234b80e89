"""The evaluation figure, drawn with Pillow alone (no matplotlib at run time): the ROC curve
on the left, the confusion matrix on the right."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1040, 520
INK = (30, 30, 30)
GRID = (225, 225, 225)
CURVE = (200, 40, 40)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _centred(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, fill=INK):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((xy[0] - (right - left) / 2, xy[1] - (bottom - top) / 2), text, font=font, fill=fill)


def evaluation_png(
    fpr: Sequence[float],
    tpr: Sequence[float],
    auc: float,
    confusion_rows: Sequence[Sequence[int]],
    title: str = "",
    notes: Sequence[str] = (),
    operating_point: tuple[float, float] | None = None,
) -> bytes:
    """PNG bytes: ROC curve (with its AUC, and the model's operating point (FPR, TPR) marked)
    and the confusion matrix [[TN, FP], [FN, TP]] with its axes named and each true class's
    count, with `notes` (e.g. the metrics) written under the matrix."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    small, medium, large = _font(14), _font(18), _font(30)
    if title:
        _centred(draw, (WIDTH / 2, 20), title, medium)

    # ROC: plot area 60..460 x 60..460
    x0, y0, side = 70, 60, 400
    for i in range(11):
        t = i / 10
        draw.line([(x0 + t * side, y0), (x0 + t * side, y0 + side)], fill=GRID)
        draw.line([(x0, y0 + t * side), (x0 + side, y0 + t * side)], fill=GRID)
        if i % 2 == 0:
            _centred(draw, (x0 + t * side, y0 + side + 14), f"{t:.1f}", small)
            _centred(draw, (x0 - 20, y0 + side - t * side), f"{t:.1f}", small)
    draw.rectangle([x0, y0, x0 + side, y0 + side], outline=INK)
    draw.line([(x0, y0 + side), (x0 + side, y0)], fill=(160, 160, 160), width=1)
    points = [(x0 + f * side, y0 + side - t * side) for f, t in zip(fpr, tpr, strict=True)]
    if len(points) > 1:
        draw.line(points, fill=CURVE, width=3)
    _centred(draw, (x0 + side / 2, y0 + side + 36), "false positive rate (1 - specificity)", small)
    draw.text((x0 + 10, y0 - 24), "true positive rate (sensitivity)", font=small, fill=INK)
    draw.text((x0 + side - 150, y0 + side - 40), f"AUC {auc:.4f}", font=medium, fill=CURVE)
    if operating_point is not None:
        fx, ty = x0 + operating_point[0] * side, y0 + side - operating_point[1] * side
        draw.ellipse([fx - 7, ty - 7, fx + 7, ty + 7], outline=INK, width=3)
        label = f"operating point ({operating_point[0]:.2f}, {operating_point[1]:.2f})"
        lx, ly = x0 + 130, y0 + side - 70  # a legend: the circle, then what it marks
        draw.ellipse([lx - 7, ly + 1, lx + 7, ly + 15], outline=INK, width=3)
        draw.text((lx + 14, ly), label, font=small, fill=INK)

    # Confusion matrix: 2 x 2 cells of 150 px at 640..940
    cx, cy, cell = 650, 110, 150
    total = sum(sum(row) for row in confusion_rows) or 1
    names = ("Normal", "Pneumonia")
    for r in range(2):
        for c in range(2):
            count = int(confusion_rows[r][c])
            shade = int(255 - 170 * count / total)
            good = r == c
            fill = (shade, 255, shade) if good else (255, shade, shade)
            box = [cx + c * cell, cy + r * cell, cx + (c + 1) * cell, cy + (r + 1) * cell]
            draw.rectangle(box, fill=fill, outline=INK)
            _centred(draw, (box[0] + cell / 2, box[1] + cell / 2 - 10), str(count), large)
            _centred(
                draw, (box[0] + cell / 2, box[1] + cell / 2 + 24), f"{count / total:.1%}", small
            )
        _centred(draw, (cx - 50, cy + r * cell + cell / 2 - 9), names[r], small)
        _centred(
            draw, (cx - 50, cy + r * cell + cell / 2 + 9), f"n={sum(confusion_rows[r])}", small
        )
        _centred(draw, (cx + r * cell + cell / 2, cy - 16), names[r], small)
    _centred(draw, (cx + cell, cy - 40), "predicted", medium)
    _centred(draw, (cx - 50, cy - 16), "truth", medium)
    for i, note in enumerate(notes):
        draw.text((cx - 95, cy + 2 * cell + 40 + 20 * i), note, font=small, fill=INK)

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
