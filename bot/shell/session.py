"""One shell session: LocalSlack in-process, the real Bolt app, lines in, replies out."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, TextIO

from slack_bolt.request.async_request import AsyncBoltRequest

from bot import log
from bot.localslack import ApiCall, LocalSlack
from bot.settings import Settings
from bot.shell.render import EMOJI, Button, render_blocks

CHANNEL = "D0SHELL01"  # a DM with the bot: every file posted gets an answer
USER = "U0SHELLME"
PROMPT = "you> "
HISTORY = Path("~/.cxr_history").expanduser()
HEATMAP_DIR = Path("cxr-heatmaps")
SLASH_COMMAND = re.compile(r"/[a-z][a-z0-9_-]*")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".dcm"}


def run_shell(settings: Settings, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    log.configure("WARNING", "text")
    shell = Shell(settings, stdin or sys.stdin, stdout or sys.stdout)
    try:
        return asyncio.run(shell.run())
    except KeyboardInterrupt:
        return 130


class Shell:
    def __init__(self, settings: Settings, stdin: TextIO, stdout: TextIO) -> None:
        # The person at the terminal runs the bot: they are its admin here.
        self.settings = settings.model_copy(update={"cxr_admins": [*settings.cxr_admins, USER]})
        self.stdin = stdin
        self.out = stdout
        self.interactive = stdin.isatty() and stdout.isatty()
        self.slack = LocalSlack()
        self.buttons: dict[int, tuple[Button, dict[str, Any], str]] = {}
        self._next_button = 1

    # --- set-up -----------------------------------------------------------------------------
    async def run(self) -> int:
        from bot.slack.app import build_app, slack_services, warm_up

        await self.slack.start()
        self.slack.listeners.append(self._show)
        self.services, client = slack_services(
            self.settings, self.slack.bot_token, self.slack.api_url
        )
        self.app = build_app(self.services, client)
        await warm_up(self.app, retry=False)
        await self._forget_last_session()
        await self.services.start()
        if self.interactive:
            self._setup_readline()
            model = self.services.router.model.describe()
            self.say(
                f"No Slack tokens set: local shell ({model}, state in "
                f"{self.settings.cxr_db_path}). Type a path to an X-ray,\n/cxr help, or quit."
            )
        try:
            await self._loop()
        finally:
            await self.services.stop()
            await self.slack.stop()
        return 0

    async def _forget_last_session(self) -> None:
        """X-rays a previous shell took but never answered (it was stopped mid-run) were served
        by that shell's own stand-in, gone now: say so once instead of failing each download."""
        dropped = await self.services.uploads.abandon(CHANNEL, self.services.clock.now())
        names = [ref.name for upload in dropped for ref in upload.files]
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            self.say(
                f"{len(names)} file(s) from the last session were never answered (the shell "
                f"stopped first): {shown}. Type their paths again to screen them.",
                "cxr-bot> ",
            )

    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # not on every platform
            return
        if HISTORY.exists():
            readline.read_history_file(HISTORY)
        import atexit

        atexit.register(readline.write_history_file, HISTORY)

    # --- the loop ---------------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, self._read_line)
            if line is None:
                break
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line in ("quit", "exit"):
                break
            await self.handle(line)
        await self._settle()

    def _read_line(self) -> str | None:
        try:
            if self.interactive:
                return input(PROMPT)
            line = self.stdin.readline()
            return line if line else None
        except EOFError:
            return None

    async def handle(self, line: str) -> None:
        first = line.split(maxsplit=1)[0]
        if SLASH_COMMAND.fullmatch(first):  # "/cxr status", not "/data/x.jpeg"
            if first != "/cxr":
                self.say(f"{first} isn't a command here; try /cxr help.", "cxr-bot> ")
                return
            await self._command(line)
        elif line.isdigit() and int(line) in self.buttons:
            await self._press(int(line))
        else:
            await self._share(line)
        await self._settle()

    async def _settle(self) -> None:
        from bot.slack.app import listeners_settled

        await listeners_settled()
        await self.services.intake.drain()

    # --- what the user does -----------------------------------------------------------------
    async def _share(self, line: str) -> None:
        paths, missing = expand_paths(line)
        for name in missing:
            self.say(f"I can't find {name}. Type a path to an image file or a folder.", "cxr-bot> ")
        if not paths:
            return
        files = [self.slack.add_file(p.name, p.read_bytes(), user=USER) for p in paths]
        envelope = self.slack.file_share_envelope(CHANNEL, files, user=USER, channel_type="im")
        response = await self._dispatch(envelope)
        if response is not None and response.status == 503:  # Slack would deliver it again
            self.say(
                f"I couldn't record {', '.join(p.name for p in paths)} in "
                f"{self.settings.cxr_db_path} (locked by another program, or the disk is "
                "full). Nothing was screened; post it again in a moment.",
                "cxr-bot> ",
            )

    async def _command(self, line: str) -> None:
        command, _, text = line.partition(" ")
        fields = self.slack.slash_command(text.strip(), user=USER, channel=CHANNEL)
        fields["command"] = command
        response = await self._dispatch(fields)
        self._show_ack(response)

    async def _press(self, number: int) -> None:
        button, message, channel = self.buttons[number]
        action = {
            "type": "button",
            "action_id": button.element.get("action_id"),
            "block_id": button.block_id,
            "value": button.element.get("value", ""),
            "text": button.element.get("text"),
        }
        payload = self.slack.block_action(action, message=message, channel=channel, user=USER)
        response = await self._dispatch(payload)
        self._show_ack(response)

    async def _dispatch(self, body: dict[str, Any]) -> Any:
        """Hand a payload to Bolt exactly as the Socket Mode transport does."""
        request = AsyncBoltRequest(body=body, mode="socket_mode")
        return await self.app.async_dispatch(request)

    # --- what the bot says ------------------------------------------------------------------
    def _show_ack(self, response: Any) -> None:
        if not response or not response.body:
            return
        try:
            body = json.loads(response.body)
        except json.JSONDecodeError:
            body = {"text": response.body}
        if body.get("text") or body.get("blocks"):
            self._print_message(body, "cxr-bot (only you)> ", CHANNEL)

    async def _show(self, call: ApiCall, result: dict[str, Any]) -> None:
        if not result.get("ok"):
            return
        params = call.params
        if call.method == "chat.postMessage":
            thread = params.get("thread_ts")
            prefix = "cxr-bot (thread)> " if thread else "cxr-bot> "
            self._print_message(result["message"], prefix, params.get("channel", CHANNEL))
        elif call.method == "chat.update":
            message = self.slack.find_message(params.get("channel", ""), params.get("ts", ""))
            if message:
                self._print_message(message, "cxr-bot (edited)> ", params.get("channel", CHANNEL))
        elif call.method in ("chat.postEphemeral", "response_url"):
            self._print_message(params, "cxr-bot (only you)> ", params.get("channel", CHANNEL))
        elif call.method == "reactions.add":
            name = params.get("name", "")
            self.say(f"{EMOJI.get(name, ':' + name + ':')} (reaction)", " " * 9)
        elif call.method == "files.completeUploadExternal":
            for entry in json.loads(params.get("files", "[]")):
                stored = self.slack.files.get(entry.get("id", ""))
                if stored is not None:
                    path = save_upload(stored.name, stored.data)
                    self.say(f"Heatmap: {path}", "cxr-bot (thread)> ")

    def _print_message(self, message: dict[str, Any], prefix: str, channel: str) -> None:
        rendered = render_blocks(
            message.get("blocks") or [], message.get("text", ""), self._next_button
        )
        for button in rendered.buttons:
            stored = {
                "ts": message.get("ts", ""),
                "text": message.get("text", ""),
                "blocks": message.get("blocks", []),
            }
            self.buttons[button.number] = (button, stored, channel)
        self._next_button += len(rendered.buttons)
        self.say("\n".join(rendered.lines), prefix)
        if rendered.buttons:
            self.say("Type a button's number to press it.", " " * len(prefix))

    def say(self, text: str, prefix: str = "") -> None:
        indent = " " * len(prefix)
        lines = text.splitlines() or [""]
        body = "\n".join([prefix + lines[0], *(indent + line for line in lines[1:])])
        self.out.write(body + "\n")
        self.out.flush()


def expand_paths(line: str) -> tuple[list[Path], list[str]]:
    """Paths, globs and folders on one line, in order; names that match nothing come back."""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    found: list[Path] = []
    missing: list[str] = []
    for word in words:
        expanded = os.path.expanduser(word)
        matches = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
        hits = [Path(m) for m in matches if Path(m).exists()]
        if not hits:
            missing.append(word)
        for hit in hits:
            if hit.is_dir():
                found.extend(p for p in sorted(hit.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
            else:
                found.append(hit)
    return found, missing


def save_upload(name: str, data: bytes) -> Path:
    HEATMAP_DIR.mkdir(exist_ok=True)
    path = HEATMAP_DIR / name
    path.write_bytes(data)
    return Path(".") / path
