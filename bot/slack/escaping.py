"""One path for everything a user wrote (file names, command arguments, titles) into a message.

Slack reads `<!channel>`, `<@U…>` and `<https://…|links>` in both mrkdwn and a message's
plain-text fallback (what notifications and screen readers show), so `&`, `<` and `>` are
escaped in both. Newlines and other control or direction-override characters are collapsed to
one space, so a name cannot forge a line of its own, and long text is shortened in the middle
(keeping the start and the extension) so whatever follows it, such as a verdict, stays in view.
"""

from __future__ import annotations

import re

# Longest user-written name shown in a message: short enough that a verdict always fits.
NAME_LIMIT = 120
ELLIPSIS = "…"

# C0/C1 controls, line and paragraph separators, zero-width and bidirectional overrides.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]+"
)
_SPACES = re.compile(r"\s+")


def collapse(text: str) -> str:
    """One line: control characters, newlines and runs of spaces become a single space."""
    return _SPACES.sub(" ", _INVISIBLE.sub(" ", str(text))).strip()


def shorten_middle(text: str, limit: int = NAME_LIMIT) -> str:
    """`text` if it fits, else its start and end around an ellipsis, `limit` characters long."""
    if limit < 3:
        raise ValueError("limit must leave room for the ellipsis")
    if len(text) <= limit:
        return text
    tail = (limit - 1) // 2
    head = limit - 1 - tail
    return text[:head] + ELLIPSIS + text[len(text) - tail :]


def escape(text: str) -> str:
    """&, < and > as Slack's entities: text only, never a mention, a link or a command."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str, limit: int = NAME_LIMIT) -> str:
    """User text for a terminal or a `plain_text` object: one line, shortened, not escaped."""
    return shorten_middle(collapse(text), limit)


def user_text(text: str, limit: int = NAME_LIMIT) -> str:
    """User text for mrkdwn and for a message's fallback text: one line, shortened, escaped.

    Shortened before escaping, so an entity is never cut in half.
    """
    return escape(plain(text, limit))
