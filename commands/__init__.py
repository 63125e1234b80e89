"""The `/cxr` slash command: help, status, start, stop, train."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services import Services
from bot.slack.permissions import Admins


def register(app: AsyncApp, services: Services, admins: Admins) -> None:
    @app.command("/cxr")
    async def cxr(ack) -> None:
        await ack("`/cxr help | status | start | stop | train` (lifecycle commands are coming).")
