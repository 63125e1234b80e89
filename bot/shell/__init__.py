"""The local shell: the whole bot in a terminal, with no Slack workspace and no AWS account.

Like Hubot's shell adapter: each line typed becomes the payload Slack would send (a file
share, a `/cxr` command, a button press) and goes through the real Bolt app; the bot's Web
API calls are served by `LocalSlack` in-process and rendered to the terminal.
"""

from bot.shell.session import run_shell

__all__ = ["run_shell"]
