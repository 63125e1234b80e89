"""The buttons on an idle alert: Stop now, Keep running 1 h, Keep running 4 h.

A press is checked against the episode as it is now (a second press, or a model the console
already stopped, changes nothing and says why), acted on, audited, and shown on the alert.
Who may press is the Slack listener's business; a refused press is only audited here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.cost_guard.alerts import EpisodeAlerts
from bot.core.cost_guard.context import GuardContext, describe_error
from bot.core.cost_guard.observer import Observer
from bot.core.cost_guard.stopper import StopOrder, Stopper
from bot.core.cost_notices import KEEP_HOURS, STOP, STOPPED, STOPPED_ELSEWHERE
from bot.core.fleet.state import Episode
from bot.core.model_versions import RUNNING, STOPPING


@dataclass(frozen=True)
class PressResult:
    ok: bool
    message: str = ""  # for the presser only (ephemeral); empty when the alert says it all


class ButtonPresses:
    def __init__(
        self, context: GuardContext, alerts: EpisodeAlerts, observer: Observer, stopper: Stopper
    ) -> None:
        self.context = context
        self.alerts = alerts
        self.observer = observer
        self.stopper = stopper

    async def press(self, episode_id: int, action: str, user: str, now: datetime) -> PressResult:
        """An admin pressed `action` on the alert of episode `episode_id`."""
        store = self.context.store
        episode = store.episode(episode_id)
        if episode is None:
            return PressResult(False, "I don't know that alert any more.")
        if not episode.open:
            by = f" by <@{episode.outcome_by}>" if _is_user(episode.outcome_by) else ""
            return PressResult(
                False, f"Already handled: {episode.version_name} {episode.outcome}{by}."
            )
        if action == STOP:
            return await self._stop(episode, user, now)
        if action in KEEP_HOURS:
            until = now + timedelta(hours=KEEP_HOURS[action])
            store.set_snooze(episode.version_arn, until, user, now, episode.id)
            store.set_note(episode.id, None)
            self.context.audit.record(
                now, user, "snooze", episode.version_name, f"ok: until {until.isoformat()}"
            )
            await self.alerts.refresh(episode, now)
            return PressResult(True)
        return PressResult(False, f"Unknown action {action!r}.")

    def record_refusal(self, episode_id: int, action: str, user: str, now: datetime) -> None:
        """Someone who may not press pressed: audited, nothing else changes."""
        episode = self.context.store.episode(episode_id)
        target = episode.version_name if episode else f"episode {episode_id}"
        self.context.audit.record(now, user, f"refused:{action}", target, "refused: not an admin")

    async def _stop(self, episode: Episode, user: str, now: datetime) -> PressResult:
        try:
            versions = await self.context.catalog.versions()
        except Exception as exc:
            return PressResult(
                False, f"I couldn't reach Rekognition ({describe_error(exc)}); try again."
            )
        version = next((v for v in versions if v.arn == episode.version_arn), None)
        if version is not None and version.status == STOPPING:
            return PressResult(False, f"{episode.version_name} is already stopping.")
        if version is None or version.status != RUNNING:
            if version is not None:
                await self.observer.stopped(version, now)  # closes the run and the episode
            await self.alerts.close(episode, STOPPED_ELSEWHERE, None, now, idle_end=now)
            status = version.status.lower() if version else "gone"
            return PressResult(False, f"{episode.version_name} is already {status}.")
        watch = self.context.store.watch(episode.version_arn)
        order = StopOrder(version.arn, version.name, STOPPED, user, episode=episode, watch=watch)
        ok, error = await self.stopper.stop(order, now)
        if not ok:
            return PressResult(False, f"The stop failed: {error}. The alert stays open.")
        return PressResult(True)


def _is_user(actor: str | None) -> bool:
    return bool(actor) and actor[:1] in ("U", "W") and actor.isalnum()  # type: ignore[index]
