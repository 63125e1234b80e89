"""What every `/cxr` subcommand handler gets: who asked, where, and how to answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.core.lifecycle import Lifecycle
from bot.core.ports import Notice
from bot.services import Services
from bot.slack.blocks import render
from bot.slack.permissions import Admins


@dataclass
class CommandContext:
    services: Services
    admins: Admins
    user: str
    channel: str
    respond: Callable[..., Awaitable[Any]]

    @property
    def lifecycle(self) -> Lifecycle:
        assert self.services.lifecycle is not None  # always attached (local-only too)
        return self.services.lifecycle

    async def reply(self, notice: Notice, **kwargs: Any) -> None:
        """An ephemeral answer through the command's response_url (usable for 30 minutes)."""
        rendered = render(notice)
        await self.respond(
            text=rendered.text,
            blocks=rendered.blocks or None,
            response_type="ephemeral",
            **kwargs,
        )

    async def allowed(self, action: str, target: str | None) -> bool:
        """Admins only: others get a polite refusal, and the refusal is audited."""
        if await self.admins.allows(self.user):
            return True
        self.lifecycle.refused(
            self.user, action, target or "-", self.admins.refusal_reason(self.user)
        )
        await self.respond(text=self.admins.refusal(self.user), response_type="ephemeral")
        return False
