"""An in-process stand-in for the Slack Web API, spoken over real HTTP on 127.0.0.1.

The local shell serves the bot's Web API calls from it and renders them to the terminal; the
tests use the very same server to see what the bot said and to inject 429s, HTML login pages
and other failures.
"""

from bot.localslack.server import ApiCall, LocalSlack

__all__ = ["ApiCall", "LocalSlack"]
