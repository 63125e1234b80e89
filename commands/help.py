"""`/cxr help` (and any unknown subcommand or bad argument): the usage, only to the asker."""

from __future__ import annotations

from commands.parser import USAGE, Help


def usage(command: Help) -> str:
    return f"{command.problem}\n\n{USAGE}" if command.problem else USAGE
