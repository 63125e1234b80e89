"""Slack listeners, one module per surface (as in Slack's bolt-python starter template).

Listeners stay thin: turn the payload into domain objects, call a service, reply. The `/cxr`
surface (the command, its buttons, the admin check) is `commands/`.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services import Services
from bot.slack.listeners import messages


def register(app: AsyncApp, services: Services) -> None:
    messages.register(app, services)
