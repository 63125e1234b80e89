"""Reviews: a clinician's label for one verdict. The latest review of a case is the one that
counts (a correction replaces an earlier label); every review stays in the audit trail."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.core.labels import Label


class ReviewLabel(StrEnum):
    NORMAL = "Normal"
    PNEUMONIA = "Pneumonia"
    NOT_ASSESSABLE = "Not assessable"

    @property
    def label(self) -> Label | None:
        """The screening label this review confirms; None for "Not assessable"."""
        return Label.parse(self.value)

    @classmethod
    def parse(cls, text: str) -> ReviewLabel | None:
        folded = text.strip().casefold().replace("_", " ").replace("-", " ")
        return next((r for r in cls if r.value.casefold() == folded), None)


@dataclass(frozen=True)
class CaseKey:
    """One image as posted: the Slack message (channel, ts) and the file in it. The file ID is
    enough to fetch the image again, so no image is ever kept."""

    channel: str
    ts: str
    file_id: str

    @property
    def message(self) -> tuple[str, str]:
        """The grouping key: images of one message are one case for a patient-level split."""
        return self.channel, self.ts


@dataclass(frozen=True)
class Review:
    case: CaseKey
    reviewer: str  # a Slack user ID
    label: ReviewLabel
    at: datetime


def current_reviews(reviews: Iterable[Review]) -> dict[CaseKey, Review]:
    """The review that counts for each case: the latest (ties: the one given last)."""
    latest: dict[CaseKey, Review] = {}
    for review in reviews:
        held = latest.get(review.case)
        if held is None or review.at >= held.at:
            latest[review.case] = review
    return latest
