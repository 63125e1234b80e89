"""Slack listeners, one module per surface (as in Slack's bolt-python starter template).

Listeners stay thin: turn the payload into domain objects, call a service, reply.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services import Services
from bot.slack.listeners import (
    cost_actions,
    lifecycle_actions,
    messages,
    promote_actions,
    review_actions,
)
from bot.slack.permissions import Admins


def register(app: AsyncApp, services: Services, admins: Admins) -> None:
    messages.register(app, services)
    cost_actions.register(app, services, admins)
    lifecycle_actions.register(app, services, admins)
    review_actions.register(app, services)
    promote_actions.register(app, services, admins)
