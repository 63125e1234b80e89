"""What the learning loop needs from storage (SQLite adapters: `bot.state.reviews`,
`bot.state.serving`), as the core sees it: records and Protocols, no SQL here."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from bot.core.ports import ImageRef
from bot.core.review.figures import Answer
from bot.core.review.records import CaseKey, Review

T = TypeVar("T")


@dataclass(frozen=True)
class ReviewedImage:
    """A reviewed case with what is needed to fetch its image again."""

    review: Review
    ref: ImageRef | None  # None when the upload record no longer lists the file


@dataclass(frozen=True)
class ServedVersion:
    version_arn: str
    since: datetime
    by: str


@dataclass(frozen=True)
class Promotion:
    id: int
    candidate_arn: str
    previous_arn: str | None
    channel: str
    user: str
    units: int
    state: str  # starting | serving | failed
    started_at: datetime
    note: str | None = None


class ReviewLog(Protocol):
    """Reviews, each model's answers and the exports for training."""

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T: ...
    async def record_answers(self, answers: Iterable[Answer], at: datetime) -> None: ...
    def answers_at(self, since: datetime | None = None) -> list[tuple[Answer, datetime]]: ...
    def answered(self, case: CaseKey) -> bool: ...
    def record(self, review: Review) -> None: ...
    def history(self, case: CaseKey) -> list[Review]: ...
    def current(self, case: CaseKey) -> Review | None: ...
    def current_all(self) -> dict[CaseKey, Review]: ...
    def reviewed_images(self) -> list[ReviewedImage]: ...
    def mark_exported(self, cases: Iterable[CaseKey], destination: str, at: datetime) -> None: ...
    def exported(self) -> frozenset[CaseKey]: ...
    def exported_at(self) -> dict[CaseKey, datetime]: ...


class ServedVersions(Protocol):
    """Which version serves, and the promotions that change it."""

    async def served(self) -> ServedVersion | None: ...
    async def serve(self, version_arn: str, by: str, at: datetime) -> None: ...
    async def open_promotion(
        self,
        candidate_arn: str,
        previous_arn: str | None,
        channel: str,
        user: str,
        units: int,
        at: datetime,
    ) -> Promotion | None: ...
    async def in_flight(self) -> Promotion | None: ...
    async def complete(
        self, promotion_id: int, version_arn: str, by: str, at: datetime
    ) -> bool: ...
    async def note(self, promotion_id: int, note: str) -> None: ...
    async def finish(self, promotion_id: int, state: str, at: datetime, note: str = "") -> None: ...


class Leases(Protocol):
    async def acquire(self, key: str, owner: str, now: datetime, ttl: timedelta) -> Any: ...
    async def release(self, keys: Iterable[str], owner: str) -> None: ...
