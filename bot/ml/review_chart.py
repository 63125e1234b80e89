"""The reviewed verdicts as a picture: one confusion matrix per model version (rows: the
reviewers' label, columns: the model's), drawn with Pillow alone like the evaluation figure."""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

from bot.core.review.figures import VersionFigures
from bot.ml.plots import INK, _centred, _font

CELL = 130
PANEL = 2 * CELL + 170
MAX_PANELS = 4


def confusion_png(figures: Sequence[VersionFigures], title: str) -> bytes:
    """PNG bytes; at most four versions (the most reviewed first), side by side."""
    shown = list(figures)[:MAX_PANELS] or []
    width = max(1, len(shown)) * PANEL + 40
    image = Image.new("RGB", (width, 2 * CELL + 260), "white")
    draw = ImageDraw.Draw(image)
    small, medium, large = _font(13), _font(16), _font(28)
    _centred(draw, (width / 2, 18), title, medium)
    if not shown:
        _centred(draw, (width / 2, CELL), "No reviewed verdicts yet.", medium)
    names = ("Normal", "Pneumonia")
    for p, fig in enumerate(shown):
        c = fig.confusion
        rows = ((c.tn, c.fp), (c.fn, c.tp))  # truth Normal, truth Pneumonia
        total = c.total or 1
        x0, y0 = 40 + p * PANEL + 110, 100
        _centred(draw, (x0 + CELL, 50), fig.model.describe(), medium)
        _centred(draw, (x0 + CELL, 74), "model said", small)
        for r in range(2):
            for col in range(2):
                count = rows[r][col]
                shade = int(255 - 170 * count / total)
                fill = (shade, 255, shade) if r == col else (255, shade, shade)
                box = [x0 + col * CELL, y0 + r * CELL, x0 + (col + 1) * CELL, y0 + (r + 1) * CELL]
                draw.rectangle(box, fill=fill, outline=INK)
                _centred(draw, (box[0] + CELL / 2, box[1] + CELL / 2), str(count), large)
            _centred(draw, (x0 - 50, y0 + r * CELL + CELL / 2), names[r], small)
            _centred(draw, (x0 + r * CELL + CELL / 2, y0 - 12), names[r], small)
        notes = [
            "rows: reviewers' label",
            f"agreement {_pct(fig.agreement.value)}  (n={fig.assessable})",
            f"sensitivity {_pct(fig.sensitivity.value)}",
            f"specificity {_pct(fig.specificity.value)}",
            f"not assessable: {fig.not_assessable}",
        ]
        for i, note in enumerate(notes):
            draw.text((x0 - 100, y0 + 2 * CELL + 14 + 18 * i), note, font=small, fill=INK)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"
