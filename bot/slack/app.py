"""The Bolt app: one `AsyncApp` with every listener, whatever the transport."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

import commands
from bot.services import Services, build_services
from bot.settings import Settings
from bot.slack import listeners
from bot.slack.client import web_client
from bot.slack.listeners import messages
from bot.slack.outbox import SlackOutbox
from bot.slack.permissions import Admins


async def slack_services(
    settings: Settings, token: str, api_url: str, **overrides: Any
) -> tuple[Services, AsyncWebClient]:
    """The services wired to a Slack Web API (Slack's, LocalSlack's): the client with its
    retries, the outbox on it, and file downloads with the same token. `overrides` go to
    `build_services` (a clock, AWS clients, a classifier)."""
    from bot.adapters.slack_files import SlackFileFetcher
    from bot.slack.files_info import SlackFileDescriber

    client = web_client(token, api_url)
    services = await build_services(
        settings,
        outbox=SlackOutbox(client),
        fetcher=SlackFileFetcher(
            token, api_url, clock=overrides.get("clock"), file_hosts=settings.slack_file_hosts
        ),
        describer=SlackFileDescriber(client),
        **overrides,
    )
    return services, client


def build_app(
    services: Services, client: AsyncWebClient, *, signing_secret: str | None = None
) -> AsyncApp:
    """Signatures are verified when a signing secret is given (HTTP mode); Socket Mode and
    the local shell have no signatures to check."""
    bolt_logger = logging.getLogger("slack_bolt")
    bolt_logger.addFilter(_own_client_chosen)
    identity = BotIdentity()
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=signing_secret is not None,
        ignoring_self_events_enabled=True,
        logger=bolt_logger,
        before_authorize=messages.record_before_ack(services, identity.is_self),
    )
    app.cxr_identity = identity  # type: ignore[attr-defined]
    admins = Admins(services.settings.cxr_admins, client)
    listeners.register(app, services)
    commands.register(app, services, admins)
    return app


def _own_client_chosen(record: logging.LogRecord) -> bool:
    """Bolt also reads SLACK_BOT_TOKEN and warns that the client given wins over it; the bot
    always hands its own client (with its retries), so that warning is noise."""
    return "token` will be unused" not in record.getMessage()


@dataclass
class BotIdentity:
    """Who the bot is in the workspace (from auth.test), once known: its own file uploads
    (heatmaps) come back as file_share events and must not be claimed as uploads."""

    user_id: str | None = None
    bot_id: str | None = None

    def is_self(self, event: dict[str, Any]) -> bool:
        return bool(
            (self.bot_id and event.get("bot_id") == self.bot_id)
            or (self.user_id and event.get("user") == self.user_id)
        )


WARM_UP_RETRY_S = (2.0, 5.0, 10.0, 30.0, 60.0)


async def warm_up(app: AsyncApp, *, retry: bool = True) -> None:
    """Learn the bot's identity with auth.test before the first event, and hand the answer
    to Bolt's authorization (it would otherwise call auth.test on the first request, in front
    of that request's ack). While Slack is unreachable, keep trying in the background."""
    from slack_bolt.middleware.authorization.async_single_team_authorization import (
        AsyncSingleTeamAuthorization,
    )

    delays = iter(WARM_UP_RETRY_S)
    while True:
        try:
            result = await app.client.auth_test()
            break
        except Exception as exc:
            delay = next(delays, WARM_UP_RETRY_S[-1])
            logging.getLogger(__name__).warning(
                "slack.auth_test_failed", extra={"error": type(exc).__name__, "retry_in": delay}
            )
            if not retry:
                return
            await asyncio.sleep(delay)
    identity: BotIdentity = app.cxr_identity  # type: ignore[attr-defined]
    identity.user_id, identity.bot_id = result.get("user_id"), result.get("bot_id")
    for middleware in app._async_middleware_list:  # Bolt keeps no public handle on it
        if isinstance(middleware, AsyncSingleTeamAuthorization):
            middleware.auth_test_result = result


async def listeners_settled() -> None:
    """Wait until Bolt's listener tasks are done: Bolt acknowledges first, then runs the
    listener as a task of its own (`run_ack_function_asynchronously`)."""
    current = asyncio.current_task()
    while True:
        running = [
            task
            for task in asyncio.all_tasks()
            if task is not current
            and getattr(task.get_coro(), "__name__", "") == "run_ack_function_asynchronously"
        ]
        if not running:
            return
        await asyncio.gather(*running, return_exceptions=True)
