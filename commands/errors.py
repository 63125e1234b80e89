"""The one error handler for the `/cxr` surface: a listener that fails is logged (its kind,
never the payload) and the asker gets one short apology, never a trace.

`apologise` is the app's `@app.error` handler. Our own listeners also wear `@answered`, which
hands their failures to the same function: slack_bolt 1.30's async runner (ack before work)
overwrites an acknowledgement with "no ack" when a listener fails within its 10 ms ack poll,
so Slack would get a 404 for a fast failure; catching it in the listener keeps the 200.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.slack.blocks import UNEXPECTED_FAILURE

log = logging.getLogger(__name__)


async def apologise(error: Exception, body: dict[str, Any], respond: Any) -> None:
    kind = body.get("command") or body.get("type") or "request"
    log.error("listener.failed", exc_info=error, extra={"kind": kind})
    if respond is not None and (body.get("response_url") or body.get("command")):
        try:
            await respond(
                text=UNEXPECTED_FAILURE, response_type="ephemeral", replace_original=False
            )
        except Exception as exc:  # the apology itself can't go out: logged above, that's all
            log.warning("listener.apology_failed", extra={"error": type(exc).__name__})


def answered(listener: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A listener (taking `body` and `respond`) whose failures go to `apologise`."""

    @functools.wraps(listener)
    async def wrapped(**kwargs: Any) -> None:
        try:
            await listener(**kwargs)
        except Exception as exc:
            await apologise(exc, kwargs.get("body") or {}, kwargs.get("respond"))

    return wrapped
