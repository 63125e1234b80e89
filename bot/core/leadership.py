"""One leader among replicas: the only one that polls AWS, alerts and stops models.

Replicas share one database. Each keeps trying to claim the lead; the holder renews its term
well before it expires, and when the holder dies its term lapses and another replica claims the
next one. Every term carries an epoch, one more than the last, so the leader's actions can be
fenced: a leader that was paused (GC, SIGSTOP, a frozen VM) past the end of its term wakes up
holding an old epoch, and its `act_once` is refused by the database, which checks the epoch
and records the action in the same transaction. Actions are recorded before they are carried
out, under a key that names them (an alert, a stop), so the next leader never repeats one.

Takeover: a term lasts `ttl` and followers retry every `ttl / 3`, so a dead leader is replaced
at most 4/3 ttl after its last renewal; pick ttl = 3/4 of the poll interval to take over within
one poll interval. Expiry is judged by the replicas' clocks: keep them in sync (NTP) to well
under a third of the ttl.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.core.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Term:
    """One replica's spell as leader of `name`."""

    name: str  # what is led, e.g. "fleet"
    owner: str  # the replica holding it (unique per process start)
    epoch: int  # one more than the term before: the fencing token
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def claim(
    current: Term | None, name: str, owner: str, now: datetime, ttl: timedelta
) -> Term | None:
    """The term `owner` gets, or None while another replica's term is running.

    The holder extends its own running term (same epoch), never shortens it (two renewals of
    one replica may reach the database out of order); a lapsed term, even one's own, is
    followed by a new epoch, so anything begun under the old one is fenced off.
    """
    if current is None:
        return Term(name, owner, 1, now + ttl)
    if not current.expired(now):
        if current.owner != owner:
            return None
        return replace(current, expires_at=max(current.expires_at, now + ttl))
    return Term(name, owner, current.epoch + 1, now + ttl)


def holds(current: Term | None, term: Term, now: datetime) -> bool:
    """Whether `term` is still the lead: same owner and epoch as the stored one, not expired."""
    return (
        current is not None
        and current.owner == term.owner
        and current.epoch == term.epoch
        and not current.expired(now)
    )


class LeadershipLost(Exception):
    """This replica's term ended (a pause, a lost connection): whatever it was doing as leader
    stops here, and the next leader does it."""


class LeaderStore(Protocol):
    """Terms and fenced actions, kept where every replica sees them (SQLite or PostgreSQL)."""

    async def claim(self, name: str, owner: str, now: datetime, ttl: timedelta) -> Term | None:
        """Claim or renew the lead atomically (see `claim`)."""
        ...

    async def current(self, name: str) -> Term | None: ...

    async def act_once(self, term: Term, key: str, now: datetime) -> bool:
        """Record action `key` under `term`: True only if the term still holds and `key` was
        never recorded, checked and written in one transaction."""
        ...

    async def release(self, term: Term) -> None:
        """End our term now (a clean shutdown), so a follower need not wait for it to lapse."""
        ...


class Leadership:
    """This replica's side of the election: claims and renews, and fences actions."""

    def __init__(
        self, store: LeaderStore, name: str, owner: str, clock: Clock, ttl: timedelta
    ) -> None:
        self.store, self.name, self.owner, self.clock, self.ttl = store, name, owner, clock, ttl
        self.term: Term | None = None
        self._changed = asyncio.Event()

    @property
    def renew_every(self) -> timedelta:
        return self.ttl / 3

    def leads(self) -> bool:
        """Whether this replica believes it leads (a local view; `act_once` is the real check)."""
        return self.term is not None and not self.term.expired(self.clock.now())

    async def step(self, now: datetime | None = None) -> Term | None:
        """Claim or renew once; log when the lead changes hands."""
        now = now or self.clock.now()
        before = self.term
        try:
            claim = asyncio.ensure_future(self.store.claim(self.name, self.owner, now, self.ttl))
            track = getattr(self.clock, "track", None)  # a fake clock waits for it (tests)
            if track is not None:
                track(claim)
            self.term = await claim
        except Exception:
            log.exception("leader.claim_failed", extra={"lead": self.name})
            self.term = None if before is None or before.expired(now) else before
        if self.term and (before is None or before.epoch != self.term.epoch):
            log.info("leader.elected", extra={"lead": self.name, "epoch": self.term.epoch})
            self._changed.set()
        elif before is not None and self.term is None:
            log.warning("leader.lost", extra={"lead": self.name, "epoch": before.epoch})
            self._changed.set()
        return self.term

    async def hold(self, now: datetime) -> bool:
        """Claim or renew, and say whether this replica leads: the fleet poller asks before
        each tick (its `Leader` port), so a follower takes over at its first tick after the
        leader's term lapsed."""
        return await self.step(now) is not None

    async def run(self) -> None:
        """Claim and renew for as long as the process runs (a background job)."""
        while True:
            # The next renewal is timed from this one's start, not its end: a slow database
            # call does not push the renewals later and the term toward its end.
            pause = asyncio.ensure_future(self.clock.sleep(self.renew_every.total_seconds()))
            try:
                await self.step()
                await pause
            finally:
                pause.cancel()

    async def wait_for_change(self) -> None:
        """Return once the lead has been won or lost (for pollers that idle as followers)."""
        self._changed.clear()
        await self._changed.wait()

    async def still_leads(self) -> bool:
        """The database's word that this replica's term still holds (same owner and epoch,
        not expired): checked before each of the leader's outward actions."""
        term, now = self.term, self.clock.now()
        if term is None or term.expired(now):
            return False
        return holds(await self.store.current(self.name), term, now)

    async def act_once(self, key: str) -> bool:
        """True when this replica may carry out action `key` now: it still leads under the
        same epoch and no leader has recorded `key` before. Record first, then act."""
        term = self.term
        if term is None or term.expired(self.clock.now()):
            return False
        allowed = await self.store.act_once(term, key, self.clock.now())
        if not allowed:
            log.info("leader.action_refused", extra={"lead": self.name, "epoch": term.epoch})
        return allowed

    async def release(self) -> None:
        if self.term is not None:
            term, self.term = self.term, None
            await self.store.release(term)


class FencedOutbox:
    """The leader's outbox: each post, update or reaction first checks in the database that
    the term still holds, and raises `LeadershipLost` if not; a leader that was paused past
    its term and wakes mid-tick cannot post what the next leader posts. (Record decisions
    with `act_once` first: then even a post that races the check is never repeated.)"""

    def __init__(self, outbox: Any, leadership: Leadership) -> None:
        self._outbox = outbox
        self._leadership = leadership

    async def _fence(self) -> None:
        if not await self._leadership.still_leads():
            log.warning("leader.fenced", extra={"lead": self._leadership.name})
            raise LeadershipLost(self._leadership.name)

    async def post(self, *args: Any, **kwargs: Any) -> Any:
        await self._fence()
        return await self._outbox.post(*args, **kwargs)

    async def update(self, *args: Any, **kwargs: Any) -> Any:
        await self._fence()
        return await self._outbox.update(*args, **kwargs)

    async def react(self, *args: Any, **kwargs: Any) -> Any:
        await self._fence()
        return await self._outbox.react(*args, **kwargs)

    async def attach_images(self, *args: Any, **kwargs: Any) -> Any:
        await self._fence()
        return await self._outbox.attach_images(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # anything else the outbox offers, unfenced
        return getattr(self._outbox, name)
