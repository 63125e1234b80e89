"""`/cxr <text>` → one command, or the usage (saying why) for anything else."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.fleet.arns import is_version_arn
from bot.core.training_data import valid_version_name
from bot.slack.escaping import user_text

# The one Slack-specific line of the usage; the local shell says its own instead.
HOW_TO_SCREEN = "To screen an X-ray, just post the image in a channel I'm in, or in a DM."

USAGE = f"""*`/cxr` manages the chest X-ray screening model.*
`/cxr status`: the model versions, what runs and what it costs, recent actions (anyone)
`/cxr start [version] [min-units] [max-units]`: start a version, after showing its hourly cost \
(admins; default: 1 unit, the serving or newest version)
`/cxr stop [version]`: stop a running version and report what it cost (admins)
`/cxr train s3://bucket/prefix [version-name]`: train a new version from the images in \
`prefix/Normal/` and `prefix/Pneumonia/` (admins)
`/cxr review [days]`: per model version, reviewed verdicts, agreement, sensitivity and \
specificity with 95% intervals (anyone; default: all time)
`/cxr promote VERSION`: compare a version with the served one, then switch to it blue/green \
(admins)
`/cxr export s3://bucket/prefix`: write the reviewed images, de-identified, under \
`prefix/Normal/` and `prefix/Pneumonia/` for `/cxr train` (admins)
`/cxr help`: this message
{HOW_TO_SCREEN}"""


@dataclass(frozen=True)
class Help:
    problem: str = ""  # why the usage is shown ("" when asked for)

    @property
    def usage(self) -> str:
        """`/cxr help`, or why the command was not understood, followed by the usage."""
        return f"{self.problem}\n\n{USAGE}" if self.problem else USAGE


@dataclass(frozen=True)
class Status:
    pass


@dataclass(frozen=True)
class Start:
    version: str | None = None
    min_units: int | None = None
    max_units: int | None = None


@dataclass(frozen=True)
class Stop:
    version: str | None = None


@dataclass(frozen=True)
class Train:
    source: str
    version_name: str | None = None


@dataclass(frozen=True)
class Review:
    days: int | None = None


@dataclass(frozen=True)
class Promote:
    version: str


@dataclass(frozen=True)
class Export:
    destination: str


Command = Help | Status | Start | Stop | Train | Review | Promote | Export


def parse(text: str) -> Command:
    words = (text or "").split()
    if not words:
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb in ("help", "-h", "--help", "?"):
        return Help()
    if verb == "status":
        return Status() if not args else Help("`/cxr status` takes no arguments.")
    if verb == "start":
        return _start(args)
    if verb == "stop":
        if len(args) > 1:
            return Help("`/cxr stop` takes at most one version.")
        if args and not _is_version(args[0]):
            return Help(f"`{_shown(args[0])}` isn't a version name.")
        return Stop(*args)
    if verb == "train":
        if not args or len(args) > 2:
            return Help("`/cxr train` needs an S3 location, and optionally a version name.")
        if not args[0].lower().startswith("s3://"):
            return Help(
                f"`{_shown(args[0])}` isn't an S3 location; write it as `s3://bucket/prefix`."
            )
        if len(args) == 2 and not valid_version_name(args[1]):
            return Help(
                f"`{_shown(args[1])}` can't be a version name: use letters, digits, dots, dashes and "
                "underscores."
            )
        return Train(*args)
    if verb == "review":
        if not args:
            return Review()
        if len(args) == 1 and args[0].isdigit() and 1 <= int(args[0]) <= 3650:
            return Review(int(args[0]))
        return Help("`/cxr review` takes at most one number: the days to look back (1 to 3650).")
    if verb == "promote":
        if len(args) != 1 or not _is_version(args[0]):
            return Help("`/cxr promote` needs one version name (see `/cxr status`).")
        return Promote(args[0])
    if verb == "export":
        if len(args) != 1 or not args[0].lower().startswith("s3://"):
            return Help("`/cxr export` needs an S3 location: `/cxr export s3://bucket/prefix`.")
        return Export(args[0])
    return Help(f"I don't know `{_shown(words[0])}`.")


def _shown(word: str) -> str:
    """A user's word quoted back: escaped, one line, short (it may be anything at all)."""
    return user_text(word, 60)


def _start(args: list[str]) -> Command:
    version = None
    numbers: list[int] = []
    for arg in args:
        if arg.isdigit():
            numbers.append(int(arg))
        elif version is None and not numbers and _is_version(arg):
            version = arg
        else:
            return Help(f"I can't read `{_shown(arg)}` in `/cxr start`.")
    if len(numbers) > 2:
        return Help("`/cxr start` takes at most two numbers: the minimum and maximum units.")
    if any(n < 1 for n in numbers):
        return Help("Inference units start at 1.")
    if len(numbers) == 2 and numbers[1] < numbers[0]:
        return Help("The maximum units can't be below the minimum.")
    return Start(version, *numbers)


def _is_version(word: str) -> bool:
    return valid_version_name(word) or is_version_arn(word)
