"""Block Kit to terminal text: what a Slack message would read like, buttons numbered."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

EMOJI = {
    "eyes": "👀",
    "white_check_mark": "✅",
    "large_orange_circle": "🟠",
    "grey_question": "❔",
    "warning": "⚠️",
    "x": "❌",
    "hourglass_flowing_sand": "⏳",
    "rocket": "🚀",
    "octagonal_sign": "🛑",
    "moneybag": "💰",
    "zzz": "💤",
    "bar_chart": "📊",
    "robot_face": "🤖",
    "information_source": "ℹ️",
    "arrow_forward": "▶️",
    "alarm_clock": "⏰",
    "arrows_counterclockwise": "🔄",
    "memo": "📝",
    "package": "📦",
}

_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#([CGD][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_CODE_BLOCK = re.compile(r"```\n?(.*?)\n?```", re.DOTALL)
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")
_BARE_LINK = re.compile(r"<([^>|]+)>")
_EMOJI = re.compile(r":([a-z0-9_+\-]+):")


@dataclass
class Button:
    number: int
    element: dict[str, Any]
    block_id: str


@dataclass
class RenderedText:
    lines: list[str]
    buttons: list[Button] = field(default_factory=list)


def mrkdwn(text: str, people: dict[str, str] | None = None) -> str:
    """Slack mrkdwn to plain text: mentions (`people` maps user IDs to names), links, emoji,
    entities; *bold*, _italic_ and `code` lose their marks."""
    people = people or {}
    text = _USER.sub(lambda m: people.get(m.group(1)) or "@" + (m.group(2) or m.group(1)), text)
    text = _CHANNEL.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _SPECIAL.sub(r"@\1", text)
    text = _CODE_BLOCK.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    text = _LINK.sub(r"\2 (\1)", text)
    text = _BARE_LINK.sub(r"\1", text)
    text = _EMOJI.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_blocks(
    blocks: list[dict[str, Any]],
    fallback: str,
    first_button: int = 1,
    people: dict[str, str] | None = None,
) -> RenderedText:
    """A message's lines as the terminal shows them; its buttons numbered from `first_button`."""

    def _text(obj: dict[str, Any] | None) -> str:
        if not obj:
            return ""
        text = obj.get("text", "")
        return mrkdwn(text, people) if obj.get("type") == "mrkdwn" else text

    if not blocks:
        return RenderedText(mrkdwn(fallback, people).splitlines() or [""])
    lines: list[str] = []
    buttons: list[Button] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("section", "header"):
            if block.get("text"):
                lines.extend(_text(block["text"]).splitlines())
            for field_ in block.get("fields", []):
                lines.extend("  " + line for line in _text(field_).splitlines())
            accessory = block.get("accessory")
            if accessory and accessory.get("type") == "button":
                buttons.append(
                    Button(first_button + len(buttons), accessory, block.get("block_id", ""))
                )
                lines.append(f"  [{buttons[-1].number}] {_text(accessory.get('text'))}")
        elif kind == "context":
            parts = [_text(e) for e in block.get("elements", []) if e.get("type") != "image"]
            lines.extend("  " + line for part in parts for line in part.splitlines())
        elif kind == "divider":
            lines.append("  ───")
        elif kind == "actions":
            labels = []
            for element in block.get("elements", []):
                if element.get("type") != "button":
                    continue
                buttons.append(
                    Button(first_button + len(buttons), element, block.get("block_id", ""))
                )
                labels.append(f"[{buttons[-1].number}] {_text(element.get('text'))}")
            if labels:
                lines.append("  " + "   ".join(labels))
        elif kind == "rich_text":
            lines.append(mrkdwn(fallback, people))
    return RenderedText(lines or [""], buttons)
