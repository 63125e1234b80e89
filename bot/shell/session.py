"""One shell session: LocalSlack in-process, the real Bolt app, lines in, replies out.

The bot runs on an event loop in a thread of its own while the main thread reads lines, so
Ctrl-C reaches the prompt at once (a fresh prompt; a second one within two seconds exits) or
stops work in progress, and messages the bot posts in the background redraw the prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TextIO

from slack_bolt.request.async_request import AsyncBoltRequest

from bot import log
from bot.core.dicom import is_dicom
from bot.core.heatmaps import distinct_name
from bot.image_files import Found, find_images, looks_like_path
from bot.localslack import ApiCall, LocalSlack
from bot.settings import Settings
from bot.shell.render import EMOJI, Button, render_blocks

CHANNEL = "D0SHELL01"  # a DM with the bot: every file posted gets an answer
USER = "U0SHELLME"
PEOPLE = {USER: "you"}
PROMPT = "you> "
HISTORY = Path("~/.cxr_history").expanduser()
HEATMAP_DIR = Path("cxr-heatmaps")
SLASH_COMMAND = re.compile(r"/[a-z][a-z0-9_-]*")
DOUBLE_INTERRUPT_SECONDS = 2.0
HOW_TO_SCREEN = "To screen an X-ray, type its path, a glob or a folder's path."
WHAT_I_TAKE = (
    "I read paths to chest X-ray images or folders (like ~/xrays/chest.jpeg or ~/xrays), "
    "/cxr commands (/cxr help), a button's number, or quit."
)


class Interrupted(Exception):
    """Ctrl-C while a line was being handled: its work was cancelled."""


def run_shell(settings: Settings, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    log.configure("WARNING", "text")
    # Bolt's developer hints ("Unhandled request", sample listener code) mean nothing here.
    logging.getLogger("slack_bolt").setLevel(logging.ERROR)
    shell = Shell(settings, stdin or sys.stdin, stdout or sys.stdout)
    if shell.interactive:
        # Someone at a terminal expects Ctrl-C to work, even if whatever started us (a script's
        # `&`, a supervisor) left SIGINT ignored, as POSIX shells do for background commands.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return shell.main()


def greeting(settings: Settings, model: str) -> str:
    """The first line: why this is the shell, when tokens are set but not used."""
    where = "PostgreSQL" if settings.cxr_database_url else settings.cxr_db_path
    state = f"local shell ({model}, state in {where})"
    if settings.transport != "shell":
        why = f"Slack tokens are set, but --shell asked for the {state}"
    elif settings.slack_bot_token:
        why = (
            "SLACK_BOT_TOKEN is set, but neither SLACK_APP_TOKEN (Socket Mode) nor "
            f"SLACK_SIGNING_SECRET (HTTP mode): {state}"
        )
    else:
        why = f"No Slack tokens set: {state}"
    return f"{why}.\nType a path to an X-ray (or a folder), /cxr help, or quit."


class Shell:
    def __init__(self, settings: Settings, stdin: TextIO, stdout: TextIO) -> None:
        # The person at the terminal runs the bot: they are its admin here.
        self.settings = settings.model_copy(update={"cxr_admins": [*settings.cxr_admins, USER]})
        self.stdin = stdin
        self.out = stdout
        self.interactive = stdin.isatty() and stdout.isatty()
        self.slack = LocalSlack()
        self.buttons: dict[int, tuple[Button, dict[str, Any], str]] = {}
        self._held: list[dict[str, Any]] | None = None  # response_url replies awaiting the ack
        self._next_button = 1
        self._heatmaps: set[str] = set()  # names saved this session: none saved twice
        self._output = threading.Lock()
        self._at_prompt = False
        self._readline: Any = None
        self.closed = False  # stdout went away (`| head`): stop quietly
        self.loop = asyncio.new_event_loop()

    # --- set-up and the main thread ---------------------------------------------------------
    def main(self) -> int:
        thread = threading.Thread(target=self.loop.run_forever, name="cxr-shell", daemon=True)
        thread.start()
        try:
            self._call(self._start())
            return self._repl()
        except Interrupted:  # Ctrl-C while starting
            return 130
        finally:
            with contextlib.suppress(BaseException):
                self._call(self._finish(), interruptible=False)
            self.loop.call_soon_threadsafe(self.loop.stop)
            thread.join(10)
            if not thread.is_alive():
                self.loop.close()

    def _call(self, work: Coroutine[Any, Any, Any], interruptible: bool = True) -> Any:
        """Run `work` on the bot's loop and wait; Ctrl-C cancels it and raises `Interrupted`."""
        future = asyncio.run_coroutine_threadsafe(work, self.loop)
        while True:
            try:
                return future.result()
            except KeyboardInterrupt:
                if not interruptible:
                    continue
                future.cancel()
                with contextlib.suppress(BaseException):
                    future.result(timeout=10)
                raise Interrupted from None

    async def _start(self) -> None:
        from bot.slack.app import build_app, slack_services, warm_up

        await self.slack.start()
        self.slack.listeners.append(self._show)
        self.services, client = await slack_services(
            self.settings, self.slack.bot_token, self.slack.api_url
        )
        self.app = build_app(self.services, client)
        await warm_up(self.app, retry=False)
        await self._forget_last_session()
        await self.services.start()
        if self.interactive:
            self._setup_readline()
            self.say(greeting(self.settings, self.services.router.model.describe()))

    async def _finish(self) -> None:
        services = getattr(self, "services", None)
        if services is not None:
            await self._settle()
            await services.stop()
        await self.slack.stop()

    async def _forget_last_session(self) -> None:
        """X-rays a previous shell took but never answered (it was stopped mid-run) were served
        by that shell's own stand-in, gone now: say so once instead of failing each download."""
        dropped = await self.services.uploads.abandon(CHANNEL, self.services.clock.now())
        files = [ref for upload in dropped for ref in upload.files]
        names = [ref.name for ref in files if ref.name]  # the database keeps no names now
        if files:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            self.say(
                f"{len(files)} file(s) from the last session were never answered (the shell "
                f"stopped first){': ' + shown if shown else ''}. Type their paths again to "
                "screen them.",
                "cxr-bot> ",
            )

    def _setup_readline(self) -> None:
        try:
            import readline
        except ImportError:  # not on every platform
            return
        self._readline = readline
        with contextlib.suppress(OSError):
            if HISTORY.exists():
                readline.read_history_file(HISTORY)
        import atexit

        atexit.register(_save_history, readline)

    def _repl(self) -> int:
        last_interrupt = -DOUBLE_INTERRUPT_SECONDS
        while not self.closed:
            try:
                line = self._read_line()
            except KeyboardInterrupt:
                if not self.interactive:
                    return 130
                now = time.monotonic()
                self._write("\n")
                if now - last_interrupt < DOUBLE_INTERRUPT_SECONDS:
                    return 130
                last_interrupt = now
                self._write("(To exit, press Ctrl-C again, Ctrl-D, or type quit.)\n")
                continue
            if line is None:
                if self.interactive:
                    self._write("\n")
                break
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line in ("quit", "exit"):
                break
            try:
                self._call(self.handle(line))
            except Interrupted:
                if not self.interactive:
                    return 130
                self._write("\n")
                self.say("Stopped. Images already sent still get their answers.", "cxr-bot> ")
            except Exception:  # a bug of ours: say so briefly, keep the session
                logging.getLogger(__name__).exception("shell.line_failed")
                self.say("Something went wrong on my side with that line.", "cxr-bot> ")
        return 1 if self.closed else 0

    def _read_line(self) -> str | None:
        try:
            if self.interactive:
                self._at_prompt = True
                try:
                    return input(PROMPT)
                finally:
                    self._at_prompt = False
            line = self.stdin.readline()
            return line if line else None
        except EOFError:
            return None

    # --- one line ---------------------------------------------------------------------------
    async def handle(self, line: str) -> None:
        first, *more = line.split(maxsplit=1)  # any whitespace: "/cxr<TAB>status" too
        rest = more[0] if more else ""
        if SLASH_COMMAND.fullmatch(first):  # "/cxr status", not "/data/x.jpeg"
            if first != "/cxr":
                self.say(f"{first} isn't a command here; try /cxr help.", "cxr-bot> ")
                return
            await self._command(first, " ".join(rest.split()))
        elif line.isdigit() and int(line) in self.buttons:
            await self._press(int(line))
        elif line.isdigit() and self.buttons:
            self.say(
                f"There is no button {line}; the last one is {max(self.buttons)}.", "cxr-bot> "
            )
        else:
            await self._share(line)
        await self._settle()

    async def _settle(self) -> None:
        from bot.slack.app import listeners_settled

        await listeners_settled()
        await self.services.intake.drain()

    # --- what the user does -----------------------------------------------------------------
    async def _share(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError:  # an unclosed quote
            words = line.split()
        found = find_images(words)
        self._report(found)
        paths = found.images
        batch = self.settings.cxr_shell_batch
        if len(paths) > batch:
            self.say(
                f"{len(paths)} images: sending them {batch} at a time"
                + (" (Ctrl-C stops the rest)." if self.interactive else "."),
                "cxr-bot> ",
            )
        for start in range(0, len(paths), batch):
            files = [self._upload(path) for path in paths[start : start + batch]]
            envelope = self.slack.file_share_envelope(CHANNEL, files, user=USER, channel_type="im")
            response = await self._dispatch(envelope)
            if response is not None and response.status == 503:  # Slack would deliver it again
                names = ", ".join(p.name for p in paths[start : start + batch])
                self.say(
                    f"I couldn't record {names} in {self.settings.cxr_db_path} (locked by "
                    "another program, or the disk is full). Nothing was screened; post it "
                    "again in a moment.",
                    "cxr-bot> ",
                )
                return
            await self._settle()

    def _upload(self, path: Path) -> dict[str, Any]:
        """The file as Slack would hold it: DICOM typed by its content, as Slack's own type
        for a file named `IM000001` would not be."""
        data = path.read_bytes()
        mimetype = "application/dicom" if is_dicom(data) else None
        return self.slack.add_file(path.name, data, mimetype=mimetype, user=USER)

    def _report(self, found: Found) -> None:
        """What was found, in one reply: never a line per word of a sentence."""
        for note in found.notes:
            self.say(note, "cxr-bot> ")
        if not found.missing:
            return
        paths = [w for w in found.missing if looks_like_path(w)]
        if not found.images and not found.notes and not paths:
            self.say(WHAT_I_TAKE, "cxr-bot> ")
        elif paths:
            names = ", ".join(paths)
            self.say(
                f"I can't find {names}. Type a path to an image file or a folder.", "cxr-bot> "
            )

    async def _command(self, command: str, text: str) -> None:
        fields = self.slack.slash_command(text, user=USER, channel=CHANNEL)
        fields["command"] = command
        await self._dispatch(fields)

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
        await self._dispatch(payload)

    async def _dispatch(self, body: dict[str, Any]) -> None:
        """Hand a payload to Bolt exactly as the Socket Mode transport does, and show its
        acknowledgement first: replies through the response_url that come back sooner wait
        for it, as the acknowledgement is what the asker sees first."""
        self._held, response = [], None
        request = AsyncBoltRequest(body=body, mode="socket_mode")
        try:
            response = await self.app.async_dispatch(request)
        finally:  # a dispatch that failed still shows what was said before it failed
            held, self._held = self._held, None
            self._show_ack(response)
            for params in held:
                self._print_message(params, "cxr-bot (only you)> ", params.get("channel", CHANNEL))

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
        elif call.method == "response_url" and self._held is not None:
            self._held.append(params)  # shown after the acknowledgement (`_dispatch`)
        elif call.method in ("chat.postEphemeral", "response_url"):
            self._print_message(params, "cxr-bot (only you)> ", params.get("channel", CHANNEL))
        elif call.method == "reactions.add":
            name = params.get("name", "")
            self.say(f"{EMOJI.get(name, ':' + name + ':')} (reaction)", " " * 9)
        elif call.method == "files.completeUploadExternal":
            for entry in json.loads(params.get("files", "[]")):
                stored = self.slack.files.get(entry.get("id", ""))
                if stored is not None:
                    path = self.save_heatmap(stored.name, stored.data)
                    self.say(f"Heatmap: {path}", "cxr-bot (thread)> ")

    def _print_message(self, message: dict[str, Any], prefix: str, channel: str) -> None:
        text = message.get("text", "")
        rendered = render_blocks(message.get("blocks") or [], text, self._next_button, PEOPLE)
        for button in rendered.buttons:
            stored = {
                "ts": message.get("ts", ""),
                "text": text,
                "blocks": message.get("blocks", []),
            }
            self.buttons[button.number] = (button, stored, channel)
        self._next_button += len(rendered.buttons)
        lines = [_for_the_shell(line) for line in rendered.lines]
        self.say("\n".join(lines), prefix)
        if rendered.buttons:
            self.say("Type a button's number to press it.", " " * len(prefix))

    def save_heatmap(self, name: str, data: bytes) -> Path:
        """Save under ./cxr-heatmaps, never over another image's map from this session."""
        HEATMAP_DIR.mkdir(exist_ok=True)
        name = distinct_name(Path(name).name, self._heatmaps)
        self._heatmaps.add(name)
        path = HEATMAP_DIR / name
        path.write_bytes(data)
        return path

    def say(self, text: str, prefix: str = "") -> None:
        indent = " " * len(prefix)
        lines = text.splitlines() or [""]
        self._write("\n".join([prefix + lines[0], *(indent + line for line in lines[1:])]) + "\n")

    def _write(self, text: str) -> None:
        """Write whole lines; while the user is at the prompt, redraw it (and what they typed)
        under a message the bot posted in the background."""
        if self.closed:
            return
        with self._output:
            try:
                if self._at_prompt and threading.current_thread() is not threading.main_thread():
                    typed = self._readline.get_line_buffer() if self._readline else ""
                    text = f"\r\x1b[K{text}{PROMPT}{typed}"
                self.out.write(text)
                self.out.flush()
            except BrokenPipeError:  # `cxr-bot < script | head`: the reader has gone
                self.closed = True
                with contextlib.suppress(OSError, ValueError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, self.out.fileno())


def _for_the_shell(line: str) -> str:
    """Slack's advice, as it applies at a terminal."""
    from bot.core.phi import REMOVE_IT
    from commands.parser import HOW_TO_SCREEN as IN_SLACK

    line = line.replace(IN_SLACK, HOW_TO_SCREEN)
    return line.replace(REMOVE_IT, "In Slack, post a de-identified copy, not this file")


def _save_history(readline: Any) -> None:
    with contextlib.suppress(OSError):
        readline.write_history_file(HISTORY)
