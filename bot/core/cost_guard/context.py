"""What the parts of the cost guard share: its dependencies, the time, the ops channel and the
router.

The guard is a handful of collaborators, each applying one rule (observe, alert, stop, follow
the schedule, take button presses, summarise, meter). They hold this one context instead of
copies of the dependencies, so a dependency changed on the facade (a test swaps the clock)
reaches all of them at once, and posting, naming a version and telling the router are
written once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from bot.core.fleet.arns import version_name
from bot.core.fleet.state import Audit, Episode, GuardMemory, Runs
from bot.core.model_versions import ModelCatalog, ModelVersion
from bot.core.ports import Notice, Outbox, PostedMessage
from bot.core.pricing import Prices
from bot.core.usage import UsageSource

if TYPE_CHECKING:
    from bot.core.clock import Clock
    from bot.core.cost_guard.config import GuardConfig
    from bot.core.routing import ModelRouter

log = logging.getLogger(__package__)  # the whole guard logs as "bot.core.cost_guard"

# Who the guard acts as in the audit log (an admin's button acts as the admin's user ID).
ACTOR = "cost-guard"
SCHEDULE_ACTOR = "schedule"


class FleetActions(Protocol):
    """The fleet's one start path and one stop path, as operations the poller follows."""

    async def request_stop(
        self, version: ModelVersion, actor: str, channel: str, report: dict[str, Any]
    ) -> str | None: ...

    async def request_start(
        self, version: ModelVersion, actor: str, channel: str, units: int, source: str
    ) -> str | None: ...


@dataclass
class GuardContext:
    catalog: ModelCatalog
    usage: UsageSource  # CloudWatch: every client's requests and the units in service
    own: UsageSource  # the bot's own classifications
    store: GuardMemory
    runs: Runs
    audit: Audit
    prices: Prices
    outbox: Outbox
    clock: Clock
    config: GuardConfig
    router: ModelRouter | None
    serving_version: Callable[[], str | None]  # the version the bot classifies with
    # The fleet's one start path and one stop path (the lifecycle's operations).
    stops: FleetActions | None = None
    # CloudWatch's error at the version's last reading ("" or absent: it was read, or is off)
    usage_errors: dict[str, str] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock.now().astimezone(UTC)

    def version_name(self, arn: str) -> str:
        watch = self.store.watch(arn)
        return watch.version_name if watch else version_name(arn)

    def tell_router(self, arn: str, running: bool) -> None:
        """The router skips a stopped primary model at once, if `arn` is the one it serves."""
        primary = getattr(self.router, "primary", None) if self.router else None
        if self.router is not None and getattr(primary, "version_arn", None) == arn:
            self.router.set_primary_running(running)

    async def post(self, notice: Notice, *, thread_ts: str | None = None) -> PostedMessage | None:
        """Post in the ops channel; None when there is none (logged instead) or Slack failed."""
        if not self.config.channel:
            log.info("cost_guard.notice", extra={"text": notice.text})
            return None
        try:
            return await self.outbox.post(self.config.channel, notice, thread_ts=thread_ts)
        except Exception as exc:
            log.warning("cost_guard.post_failed", extra={"error": describe_error(exc)})
            return None

    async def update(self, episode: Episode, notice: Notice) -> None:
        """Rewrite an episode's alert in place (nothing to do while it has no message)."""
        if not (episode.channel and episode.ts):
            return
        try:
            await self.outbox.update(PostedMessage(episode.channel, episode.ts), notice)
        except Exception as exc:
            log.warning("cost_guard.update_failed", extra={"error": describe_error(exc)})


def describe_error(exc: Exception) -> str:
    """A short, loggable description (botocore's ClientError carries the AWS error code)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            message = response.get("Error", {}).get("Message", "")
            return f"{code}: {message}" if message else code
    return f"{type(exc).__name__}: {exc}"[:300]
