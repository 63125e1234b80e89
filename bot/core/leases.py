"""Leases: which instance may work on something, and until when.

Several instances can share one database (a rolling deploy, replicas). Work that must happen
once (answering an upload, commanding an operation) is guarded by a lease:
an owner, a key and an expiry. The owner renews it while working; if the owner dies, the lease
expires and another instance may take the work over. These are the pure decisions; storage
lives in `bot.state.leases`, which applies them inside one database transaction. (The one
poller's lead is a fenced term instead: `bot.core.leadership`.)
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Lease:
    key: str  # what is leased: "upload:C123:1700000000.000100", "operation:12", …
    owner: str  # which instance holds it (see `new_owner`)
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def held_by(self, owner: str, now: datetime) -> bool:
        return self.owner == owner and not self.expired(now)


@dataclass(frozen=True)
class LeaseTerms:
    """How long a lease lasts; the holder renews it well before then (a third of the way)."""

    ttl: timedelta

    @property
    def renew_every(self) -> timedelta:
        return self.ttl / 3


def acquire(
    current: Lease | None, key: str, owner: str, now: datetime, ttl: timedelta
) -> Lease | None:
    """The lease `owner` gets on `key`, or None while another owner's lease is still running.

    Taking a free key, an expired lease or one's own lease (which extends it) all succeed.
    """
    if current is None or current.owner == owner or current.expired(now):
        return Lease(key, owner, now + ttl)
    return None


def renew(current: Lease | None, owner: str, now: datetime, ttl: timedelta) -> Lease | None:
    """Extend a lease that is still ours; None when it is gone or another owner took it over
    (then the work must stop: someone else is doing it). A lease of ours that expired but
    that nobody took is renewed: no one else can have started."""
    if current is None or current.owner != owner:
        return None
    return Lease(current.key, owner, now + ttl)


def may_release(current: Lease | None, owner: str) -> bool:
    """Only the holder releases a lease (a late release must not free someone else's)."""
    return current is not None and current.owner == owner


UPLOAD_LEASE_PREFIX = "upload:"


def upload_lease(upload_key: str) -> str:
    """The lease key of an upload (`Upload.key`: channel and message ts)."""
    return UPLOAD_LEASE_PREFIX + upload_key


def new_owner() -> str:
    """A name for this process that no other instance, past or present, shares."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
