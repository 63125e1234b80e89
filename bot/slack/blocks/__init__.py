"""Block Kit for every `Notice` the domain posts: one renderer per notice type.

`render` dispatches on the notice's class; each module below registers the renderers for one
domain. A notice without a renderer falls back to its plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

from bot.core.ports import Notice
from bot.slack.escaping import escape, user_text  # noqa: F401  (re-exported for renderers)

# What a user reads when a listener fails unexpectedly (the details go to the logs).
UNEXPECTED_FAILURE = "Something went wrong on my side; it's been logged. Please try again later."


@dataclass(frozen=True)
class Rendered:
    text: str  # the notification and accessibility fallback: carries the same facts
    blocks: list[dict[str, Any]] = field(default_factory=list)


@singledispatch
def render(notice: Notice) -> Rendered:
    return Rendered(text=notice.text or "(no text)", blocks=[])


@singledispatch
def render_parts(notice: Notice) -> list[Rendered]:
    """A notice as one or more messages, posted in order (a reply too big for one message
    registers its own splitting); most notices are one message."""
    rendered = render(notice)  # a renderer may also return its parts itself
    return list(rendered) if isinstance(rendered, list | tuple) else [rendered]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": t[:3000]} for t in texts]}


def button(
    text: str, action_id: str, value: str, style: str | None = None, confirm: dict | None = None
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text[:75], "emoji": True},
        "action_id": action_id,
        "value": value[:2000],
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def actions(block_id: str, *elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "actions", "block_id": block_id, "elements": list(elements)}


# Renderers register themselves on import.
from bot.slack import fleet  # noqa: E402, F401
from bot.slack.blocks import verdicts  # noqa: E402, F401
