"""Reviews in the chat and the figures they make: record a clinician's label (audited), and
report each model version's agreement, sensitivity and specificity over a window of days."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.core.clock import Clock
from bot.core.fleet.state import Audit
from bot.core.learning.ports import Promotion, ReviewLog, ServedVersion
from bot.core.ports import Notice
from bot.core.review.figures import Answer, VersionFigures, figures_by_model
from bot.core.review.records import CaseKey, Review, ReviewLabel


@dataclass(frozen=True)
class Reviewed:
    """What a review press did: the label that now counts, and the one it replaced."""

    review: Review
    previous: Review | None

    @property
    def corrected(self) -> bool:
        return self.previous is not None and self.previous.label is not self.review.label


@dataclass
class ReviewReport(Notice):
    """`/cxr review [days]` and the figures in `/cxr status`."""

    days: int | None = None  # None: all time
    figures: list[VersionFigures] = field(default_factory=list)
    left_out: int = 0  # reviewed answers given after the case was exported for training


@dataclass
class StatusWithFigures(Notice):
    """`/cxr status`: the lifecycle's report, then the served version and the figures."""

    status: Notice = field(default_factory=Notice)
    report: ReviewReport = field(default_factory=ReviewReport)
    served: ServedVersion | None = None
    configured_arn: str | None = None  # CXR_PROJECT_VERSION_ARN, the initial value
    promotion: Promotion | None = None  # one under way


class Reviewing:
    def __init__(self, store: ReviewLog, audit: Audit, clock: Clock) -> None:
        self.store = store
        self.audit = audit
        self.clock = clock

    async def known(self, case: CaseKey) -> bool:
        """Whether the bot has a verdict on record for this image (a stale button has none)."""
        return await self.store.off_loop(self.store.answered, case)

    async def review(self, case: CaseKey, reviewer: str, label: ReviewLabel) -> Reviewed:
        """Record the review (the audit trail too), off the event loop."""
        reviewed = await self.store.off_loop(self._review, case, reviewer, label)
        previous = reviewed.previous
        result = f"ok: {label.value}" + (
            f" (was {previous.label.value} by {previous.reviewer})" if previous else ""
        )
        await self.audit.record(reviewed.review.at, reviewer, "review", _target(case), result)
        return reviewed

    async def refused(self, case: CaseKey, user: str) -> None:
        await self.audit.record(
            self.clock.now(), user, "refused:review", _target(case), "refused: not a reviewer"
        )

    async def report(self, days: int | None = None) -> ReviewReport:
        return await self.store.off_loop(self._report, days)

    def _review(self, case: CaseKey, reviewer: str, label: ReviewLabel) -> Reviewed:
        previous = self.store.current(case)
        review = Review(case, reviewer, label, self.clock.now())
        self.store.record(review)
        return Reviewed(review, previous)

    def _report(self, days: int | None = None) -> ReviewReport:
        since = self.clock.now() - timedelta(days=days) if days else None
        answers, left_out = held_out(self.store.answers_at(since), self.store.exported_at())
        reviews = self.store.current_all()
        left_out = sum(1 for a in left_out if a.case in reviews)
        return ReviewReport(
            days=days, figures=figures_by_model(answers, reviews), left_out=left_out
        )


def held_out(
    answers: list[tuple[Answer, datetime]], exported_at: dict[CaseKey, datetime]
) -> tuple[list[Answer], list[Answer]]:
    """Split answers into those that may count and those that may not: an answer given after
    its image was exported for training may come from a model trained on it."""
    kept, dropped = [], []
    for answer, at in answers:
        exported = exported_at.get(answer.case)
        (dropped if exported is not None and exported <= at else kept).append(answer)
    return kept, dropped


def _target(case: CaseKey) -> str:
    return f"{case.channel}/{case.ts}/{case.file_id}"
