"""Slack's request signature, checked on the raw bytes before anything is decoded or parsed.

The timestamp must be digits within five minutes of now, the signature `v0=` and 64 hex digits
matching HMAC-SHA256(secret, "v0:{timestamp}:{body}"), compared in constant time. slack_sdk's
own verifier calls `int()` on the header (a crash on junk) and wants the body as text.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

MAX_CLOCK_SKEW_S = 5 * 60


@dataclass(frozen=True)
class Rejection:
    status: int  # 400 malformed, 401 unsigned, stale or forged
    reason: str  # for the log line (never the body or the headers' values)


def check_signature(
    secret: bytes, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> Rejection | None:
    """None when the request is Slack's; else why not, and which status to answer."""
    if not timestamp:
        return Rejection(401, "no_timestamp")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return Rejection(400, "malformed_timestamp")
    if abs(now - int(timestamp)) > MAX_CLOCK_SKEW_S:
        return Rejection(401, "stale_timestamp")
    if not signature:
        return Rejection(401, "no_signature")
    if not signature.isascii() or not signature.startswith("v0=") or len(signature) != 67:
        return Rejection(401, "malformed_signature")
    expected = hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    if not hmac.compare_digest("v0=" + expected.hexdigest(), signature):
        return Rejection(401, "bad_signature")
    return None


def now() -> float:
    return time.time()
