"""Block Kit and mrkdwn as the terminal shows them."""

from __future__ import annotations

import re
from pathlib import Path

from bot.shell.render import EMOJI, mrkdwn, render_blocks

ROOT = Path(__file__).resolve().parent.parent


def test_mentions_code_and_emoji_read_as_plain_text():
    text = "Started by <@U0SHELLME> for <@U123|ana> in <#C1|ops>: `/cxr stop` :arrow_forward:"
    assert mrkdwn(text, {"U0SHELLME": "you"}) == "Started by you for @ana in #ops: /cxr stop ▶️"
    assert mrkdwn("```\nline\n```  *bold* _it_ &lt;b&gt;") == "line  bold it <b>"


def test_buttons_are_numbered_from_the_first_free_number():
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Stop <@U9>'s model?"}},
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Stop"}},
                {"type": "button", "text": {"type": "plain_text", "text": "Keep"}},
            ],
        },
    ]
    rendered = render_blocks(blocks, "", first_button=3, people={"U9": "you"})
    assert rendered.lines == ["Stop you's model?", "  [3] Stop   [4] Keep"]
    assert [b.number for b in rendered.buttons] == [3, 4]


def test_every_emoji_the_bot_posts_has_a_terminal_glyph():
    used: set[str] = set()
    for folder in ("bot", "commands"):
        for source in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"[\"' ]:([a-z_]+):[\"' ]", source.read_text()))
            used |= set(re.findall(r'REACTION_\w+ = "([a-z_]+)"', source.read_text()))
    assert used, "the scan found no emoji at all"
    missing = sorted(name for name in used if name not in EMOJI and name not in {"memory"})
    assert not missing, f"no terminal glyph for {missing}"
