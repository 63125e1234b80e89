"""Every word the model fleet says in Slack, and its Block Kit (`slack_sdk.models.blocks`).

The core's fleet notices are facts; `@says(kind, emoji)` words each kind once, as paragraphs
(`who` turns a user or channel ID into a name: a mention here, the ID itself in `said`), and
lays them out: the first behind the emoji, the rest as context, then the buttons the notice
offers. The fallback `text` that notifications, screen readers and the local shell read joins
the same paragraphs: one wording.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from functools import partial, singledispatch
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.core.errors import AwsFailure
from bot.core.fleet import notices as n
from bot.core.fleet.decisions import SLOW_STOP
from bot.core.fleet.guard import MeterLine, PressResult
from bot.core.fleet.state import AuditEntry, Operation
from bot.core.fleet.status import StatusReport, VersionRow
from bot.core.labels import Label
from bot.core.model_versions import LabelMetrics
from bot.core.pricing import duration, usd
from bot.core.schedule import Window
from bot.core.training_data import MAX_ASPECT, MAX_SIDE, MIN_SIDE, Problem
from bot.slack.blocks import Rendered, render
from bot.slack.escaping import escape
from bot.slack.escaping import plain as one_line

Who = Callable[[str], str]
Emoji = str | Callable[[Any], str]
Buttons = Callable[[Any], Block | None] | None
Wording = Callable[[Any, Who], list[str]]

# Buttons. A start proposal's value carries the version and units (JSON); an idle alert's
# action_ids are "cost_guard:<action>" and the value is the episode id.
START_BLOCK = "lifecycle_start"
CONFIRM_START = "lifecycle.start.confirm"
CANCEL_START = "lifecycle.start.cancel"
ACTION_PREFIX = "cost_guard:"
BUTTON_LABELS = {n.STOP: "Stop now", n.KEEP_1H: "Keep running 1 h", n.KEEP_4H: "Keep running 4 h"}
MAX_BLOCKS = 50

WAIT, WARN = ":hourglass_flowing_sand:", ":warning:"
TONE_EMOJI = {"ok": ":white_check_mark:", "busy": WAIT, "error": WARN}
TRAIN_PHASES = {
    "validating": "checking the images",
    "datasets": "creating the project's datasets from the manifest",
    "creating": "importing the images into the datasets",
    "splitting": "moving 20% of the images to the test dataset",
    "training": "training",
}
FAILED = {
    n.ModelStartFailed: "{} failed to start",
    n.ModelStopFailed: "{} did not stop",
    n.TrainingFailed: "Training {} failed",
}
OUTCOMES = {  # how an idle alert ended (or paused)
    n.SNOOZED: "kept running by {actor} at {at} until {until}",
    n.STOPPED: "stopped by {actor} at {at} after {idle} idle",
    n.AUTO_STOPPED: "stopped automatically at {at} after {idle} idle",
    n.SCHEDULE_STOPPED: "stopped by the schedule at {at}",
    n.STOPPED_ELSEWHERE: "stopped outside the bot (seen at {at})",
    n.RESUMED: "back in use at {at} after {idle} idle",
    n.STOP_FAILED: "stop{by} failed at {at}: {detail}",
}
SEES_ALL = {
    "sole-client": " (the bot is this project's only client, so it sees every request)",
    "owned": " (only the bot calls this version, so it sees every request)",
}
NOT_VISIBLE = (
    "I won't stop it automatically: other applications may call this version, and AWS reports "
    "no per-version request count, so I can't tell that nobody uses it (CXR_SOLE_CLIENT or "
    "CXR_OWNED_VERSIONS lets me). Stop it with the button if it's unused."
)
CARD_SPLITS = {
    "validation": "Validation",
    "validation_atypical": "Harder validation (films atypical for their class)",
}
CARD_MEASURES = ("accuracy", "sensitivity", "specificity", "f1", "auc")
DOING = {"train": "training", "start": "starting", "stop": "stopping"}  # a version's operation
NO_FALLBACK = {  # when the serving version isn't running: has the bot a fallback?
    True: "the local model answers meanwhile",
    False: "X-rays get no verdict until it is started",
}
PAGES: set[type] = set()  # kinds whose paragraphs are sections, on lines of their own

_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")


# --- shared phrases --------------------------------------------------------------------------
AWS_WORDS = {  # an AWS failure, by kind; the others say AWS's code and message
    "credentials": "AWS refused the bot's credentials ({code}: {message}). Check its IAM policy.",
    "no-credentials": "The bot has no AWS credentials configured.",
    "unreachable": "I couldn't reach AWS just now; please try again in a few minutes.",
    "said": "{message}",
}


def aws_words(failure: AwsFailure) -> str:
    """An AWS failure in words an admin can act on ("no answer": a source that gave none)."""
    words = AWS_WORDS.get(failure.kind)
    if words is not None:
        return words.format(code=failure.code, message=failure.message)
    return f"{failure.code}: {failure.message}" if failure.message else failure.code or "no answer"


def units_phrase(low: int, high: int | None = None) -> str:
    if high is None or high == low:
        return plural(low, "inference unit")
    return f"{low}–{high} inference units (auto-scaling)"


def hourly_phrase(low: float, high: float) -> str:
    if abs(high - low) < 0.005:
        return f"{usd(low)}/hour (about {usd(low * 24)}/day)"
    return f"{usd(low)}–{usd(high)}/hour (about {usd(low * 24)}–{usd(high * 24)}/day)"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def metrics_phrase(labels: list[LabelMetrics]) -> str:
    return "; ".join(
        f"{m.label}: precision {percent(m.precision)}, recall {percent(m.recall)}" for m in labels
    )


def named(actor: str | None, who: Who) -> str:
    """Who acted ("someone" when nobody is known)."""
    return who(actor) if actor else "someone"


def ran_for(seconds: float | None, cost: float | None, words: str) -> str:
    """A run's length and cost in `words` ("{time}", "{cost}"), or "" when either is unknown."""
    known = seconds is not None and cost is not None
    return words.format(time=duration(seconds or 0), cost=usd(cost or 0)) if known else ""


# --- mentions --------------------------------------------------------------------------------
def ref(identifier: str) -> str:
    """A Slack mention for a user or channel ID; anything else (e.g. "cost-guard") as is."""
    if _USER.match(identifier):
        return f"<@{identifier}>"
    if _CHANNEL.match(identifier):
        return f"<#{identifier}>"
    return "a direct message" if identifier.startswith("D") else escape(identifier)


def said(notice: Any) -> str:
    """A notice's words as plain text, IDs as they are (for logs, the CLI and tests)."""
    return ("\n" if type(notice) in PAGES else " ").join(words(notice, str))


def mrkdwn(notice: Any) -> list[str]:
    """A notice's paragraphs as Slack mrkdwn: the words escaped, the IDs as mentions (`who`
    leaves a placeholder for each, so that escaping can't touch them)."""
    mentions: list[str] = []

    def who(identifier: str) -> str:
        mentions.append(ref(identifier))
        return f"\x00{len(mentions) - 1}\x00"

    return [_PLACEHOLDER.sub(lambda m: mentions[int(m[1])], escape(p)) for p in words(notice, who)]


# --- Block Kit -------------------------------------------------------------------------------
def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text[:3000])


def button(text: str, action: str, value: str, **style: Any) -> ButtonElement:
    return ButtonElement(text=text[:75], action_id=action, value=value[:2000], **style)


def laid_out(emoji: Emoji, buttons: Buttons, notice: Any) -> Rendered:
    """The first paragraph behind the emoji, the others as context (or sections), the buttons."""
    first, *rest = mrkdwn(notice)
    mark = emoji(notice) if callable(emoji) else emoji
    page = type(notice) in PAGES
    row = buttons(notice) if buttons else None
    blocks: list[Block] = [
        SectionBlock(text=_md(f"{mark} {first}")),
        *(SectionBlock(text=_md(p)) if page else ContextBlock(elements=[_md(p)]) for p in rest),
        *([row] if row else []),
    ]
    text = ("\n" if page else " ").join([first, *rest])
    return Rendered(text=text, blocks=[b.to_dict() for b in blocks[:MAX_BLOCKS]])


def toned(answer: n.Answer) -> str:
    return TONE_EMOJI.get(answer.tone, ":information_source:")


# --- the words, one function per kind -------------------------------------------------------
@singledispatch
def words(notice: Any, who: Who) -> list[str]:
    """A notice in paragraphs; a notice whose words came with it (`text`) says them."""
    return [notice.text]


def says(
    kind: type, emoji: Emoji = "", *, page: bool = False, buttons: Buttons = None
) -> Callable[[Wording], Wording]:
    """Registers a kind's words, and (with an emoji) its look: the first paragraph behind the
    emoji, the others as context (as sections on a `page`), then the `buttons`."""
    PAGES.update([kind] if page else [])
    if emoji:
        render.register(kind, partial(laid_out, emoji, buttons))
    return lambda wording: words.register(kind, wording)


BUSY_WITH = {"start": "already starting", "stop": "stopping", "train": "still training"}


@says(n.Busy, WAIT)
def _(b: n.Busy, who: Who) -> list[str]:
    by = "you" if b.by == b.asker else who(b.by)
    now = f", now {TRAIN_PHASES.get(b.phase, b.phase)}" if b.phase else ""
    what = "already training" if b.asked == "train" else BUSY_WITH.get(b.kind, b.kind)
    text = f"{b.version_name} is {what} (asked by {by} {duration(b.age_seconds)} ago{now})."
    text += " One training at a time." if b.asked == "train" else ""
    return [text + (f" I'll post the outcome in {who(b.channel)}." if b.channel else "")]


SHOWN_ITEMS = 10  # how many offending files a refusal lists before "and N more"
FOLDERS = " and ".join(f"`{label.value}/`" for label in Label)
PROBLEMS: dict[str, str | Callable[[Problem], str]] = {  # why a training source is refused
    "region": "Bucket `{source}` is in {regions[0]}, but the bot's Rekognition project is in "
    "{regions[1]}: Rekognition only reads buckets in its own region. Copy the images to a bucket "
    "there.",
    "empty": "`{source}` is empty: I found no files there. Put the images in {folders} folders "
    "under it.",
    "unknown-folders": "Folders I don't know as labels (the labels are {folders}):",
    "unlabelled": "Files that aren't in a label folder:",
    "non-images": "Files that aren't images (Rekognition takes JPEG and PNG):",
    "one-label": lambda p: (
        f"Only one label has images ({p.labels[0]}: {p.count}); a classifier needs both. "
        f"Nothing found under `{p.source}" + "/`, `".join(p.labels[1:]) + "/`."
    ),
    "no-images": "No images found under {folders} in `{source}`.",
    "too-few": "Too few images to train on (at least {limit} per label):",
    "too-many": "{count:,} images: a dataset holds at most {limit:,}.",
    "unreadable": "Files I couldn't read as images:",
    "wrong-format": "Images that aren't JPEG or PNG:",
    "too-large": "Images over Rekognition's 15 MB limit:",
    "outside-limits": f"Images outside Rekognition's limits ({MIN_SIDE} to {MAX_SIDE} pixels a "
    f"side, aspect ratio at most {MAX_ASPECT:.0f}:1):",
}
ITEMS: dict[str, Callable[..., str]] = {  # a listed file's (or folder's) facts; else its name
    "unknown-folders": lambda folder, files: f"{folder}/ ({plural(files, 'file')})",
    "too-few": "{}: {}".format,
    "wrong-format": "{} (a {} file)".format,
    "too-large": lambda name, size: f"{name} ({size / 1024 / 1024:.1f} MB)",
    "outside-limits": lambda name, w, h, sides_fit: (
        f"{name} ({w}×{h}" + (f", aspect over {MAX_ASPECT:.0f}:1)" if sides_fit else ")")
    ),
}


def problem(p: Problem, shown: int = SHOWN_ITEMS) -> str:
    """A reason to refuse, then the first `shown` files it concerns (and how many more)."""
    words = PROBLEMS[p.reason]
    text = words(p) if callable(words) else words.format_map({**vars(p), "folders": FOLDERS})
    listed = [ITEMS.get(p.reason, "{}".format)(*facts) for facts in p.items[:shown]]
    listed += [f"… and {len(p.items) - shown} more"] if len(p.items) > shown else []
    return text + "".join(f"\n• `{line}`" for line in listed)


@says(n.TrainingRefused, ":x:", page=True)
def _(r: n.TrainingRefused, who: Who) -> list[str]:
    return [
        f"I can't train from {one_line(r.source)}:",
        *(problem(p) for p in r.problems),
        "Fix these and run `/cxr train` again; nothing was sent to Rekognition.",
    ]


def proposal_buttons(p: n.StartProposal) -> Block:
    value = json.dumps(
        {"arn": p.version_arn, "name": p.version_name, "min": p.min_units, "max": p.max_units}
    )
    start = button("Start it", CONFIRM_START, value, style="primary")
    return ActionsBlock(
        block_id=START_BLOCK, elements=[start, button("Cancel", CANCEL_START, value)]
    )


@says(n.StartProposal, ":moneybag:", buttons=proposal_buttons)
def _(p: n.StartProposal, who: Who) -> list[str]:
    text = (
        f"Start {p.version_name} with {units_phrase(p.min_units, p.max_units)}? It costs an "
        f"estimated {hourly_phrase(p.hourly_low, p.hourly_high)} for as long as it runs, used or "
        "not, until someone stops it."
    )
    if p.others_running:
        text += f" Already running (and billing): {', '.join(p.others_running)}."
    f1 = f", F1 {p.f1:.3f}" if p.f1 is not None else ""
    facts = f"Version {p.version_name} ({p.status}{f1}); prices are estimates from the configured rates."
    return [text, facts]


@says(n.StartRequested, ":rocket:")
def _(s: n.StartRequested, who: Who) -> list[str]:
    return [
        f"{who(s.by)} confirmed: starting {s.version_name} with "
        f"{units_phrase(s.min_units, s.max_units)}, an estimated "
        f"{hourly_phrase(s.hourly_low, s.hourly_high)}. Starting takes a few minutes; I'll post "
        "in this channel when it's running."
    ]


@says(n.ModelRunning, ":rocket:")
def _(r: n.ModelRunning, who: Who) -> list[str]:
    text = (
        f"{r.version_name} is running with {units_phrase(r.min_units, r.max_units)} (started by "
        f"{who(r.by)}, took {duration(r.took_seconds)}). It costs an estimated "
        f"{hourly_phrase(r.hourly_low, r.hourly_high)} until it is stopped with "
        f"`/cxr stop {r.version_name}`. X-rays posted from now on are screened by it."
    )
    return [text]


@says(n.StartCancelled, ":information_source:")
def _(c: n.StartCancelled, who: Who) -> list[str]:
    return [f"{who(c.by)} cancelled: {c.version_name} was not started."]


@says(n.StopRequested, ":octagonal_sign:")
def _(s: n.StopRequested, who: Who) -> list[str]:
    ran = ran_for(s.ran_seconds, s.cost, " (running for {time}, about {cost} so far)")
    return [f"Stopping {s.version_name}{ran}. I'll post in this channel when it has stopped."]


@says(n.ModelStopped, ":zzz:")
def _(s: n.ModelStopped, who: Who) -> list[str]:
    cost = ran_for(s.ran_seconds, s.cost, "It ran for {time}, an estimated {cost}.")
    cost = cost or "I have no record of when it started, so no cost for this run."
    return [f"{s.version_name} has stopped (asked by {who(s.by)}). {cost}"]


STOP_FAILURES = {  # why a stop failed (or, "slow", is slow)
    "gone": "the version no longer exists in the project",
    "never-sent": "the request never reached Rekognition (the bot restarted while sending it); "
    "it is still {status}. Run `/cxr stop {name}` again",
    "not-stopped": "the stop did not take effect: it is {status}",
    "slow": "it is still STOPPING after " + duration(SLOW_STOP.total_seconds()),
}
FAILURES = {  # why a start or a training failed
    "gone": STOP_FAILURES["gone"],
    "never-sent": "the request never reached Rekognition (the bot restarted while sending "
    "it); run `/cxr start {name}` again",
    "not-running": "it is {status} instead of running",
    "interrupted": "the bot restarted while it was checking the images, before anything was "
    "sent to Rekognition. Run `/cxr train {detail}` again.",
    "old-dataset": "I couldn't delete the old {status} dataset: {detail}",
    "datasets": "creating the datasets failed: {detail}",
    "dataset-failed": "the {status} dataset failed: {detail}",
    "nothing-imported": "Rekognition imported no labelled images from the manifest ({detail} "
    "entries with errors).",
    "split": "splitting the datasets failed: {detail}",
    "split-empty": "the split left the test dataset empty",
    "create-version": "CreateProjectVersion failed: {detail}",
}


def failure(f: n.OperationFailed) -> str:
    words = (STOP_FAILURES if isinstance(f, n.ModelStopFailed) else FAILURES).get(f.reason)
    detail = aws_words(f.failure) if f.failure else f.detail
    if words is None:  # Rekognition's own reason
        return detail or "Rekognition gave no reason"
    return words.format(name=f.version_name, status=f.status, detail=detail)


def ended(text: str) -> str:
    """`text` closing a sentence: one full stop, whether or not it brought its own (AWS's
    words are whole sentences; a version's state is a clause)."""
    return text if text.endswith((".", "!", "?")) else text + "."


def why_not(refused: n.Refusal) -> str:
    """Why the guard's stop or start wasn't asked for, in a clause: AWS's error, or what holds
    the version."""
    if isinstance(refused, n.RequestFailed):
        return aws_words(refused.failure)
    what = BUSY_WITH.get(refused.kind, refused.kind) if isinstance(refused, n.Busy) else "busy"
    return f"{refused.version_name} is {what}"


@says(n.OperationFailed, WARN)
def _(f: n.OperationFailed, who: Who) -> list[str]:
    return [f"{FAILED[type(f)].format(f.version_name)} (asked by {who(f.by)}): {failure(f)}"]


@says(n.TrainingStarted, toned)
def _(t: n.TrainingStarted, who: Who) -> list[str]:
    images = ", ".join(f"{count:,} {label}" for label, count in t.counts.items())
    return [
        f"Training {t.version_name} from {t.source}: {sum(t.counts.values()):,} images "
        f"({images}), manifest written to {t.manifest}. I'll post progress in this channel."
    ]


@says(n.TrainingProgress, lambda t: ":bar_chart:" if t.done else WAIT)
def _(t: n.TrainingProgress, who: Who) -> list[str]:
    images = ", ".join(f"{count:,} {label}" for label, count in t.counts.items())
    text = f"Training {t.version_name} from {t.source} ({images} images), asked by {who(t.by)}."
    if t.done:
        return [text + " Finished: see below."]
    text += f" Now: {TRAIN_PHASES.get(t.phase, t.phase)}." + progress_detail(t)
    if t.replacing and t.phase == "datasets":
        text += " The project's current datasets are replaced (trained versions keep theirs)."
    return [text + " Training usually takes 30 minutes to a few hours; I'll post when it ends."]


def progress_detail(t: n.TrainingProgress) -> str:
    if t.split:
        return f" {t.split[0]:,} training and {t.split[1]:,} test images."
    if t.imported:
        skipped = f" ({t.imported[1]} with errors, skipped)" if t.imported[1] else ""
        return f" {t.imported[0]:,} images imported{skipped}."
    return f" {t.detail}" if t.detail else ""


@says(n.TrainingCompleted, ":white_check_mark:")
def _(t: n.TrainingCompleted, who: Who) -> list[str]:
    f1 = "unknown" if t.f1 is None else f"{t.f1:.3f}"
    lines = [f"Training {t.version_name} finished (asked by {who(t.by)}): F1 {f1}."]
    lines += [metrics_phrase(t.labels) + "."] if t.labels else []
    if t.test_images:
        lines.append(f"Tested on {t.test_images:,} images, trained on {t.train_images or 0:,}.")
    billed = ran_for(
        t.billable_seconds, t.cost, "Billable training time {time}, an estimated {cost}."
    )
    return [*lines, *([billed] if billed else []), f"Start it with `/cxr start {t.version_name}`."]


PRESS_REPLIES = {  # why a press on an idle alert did nothing
    "unknown-alert": "I don't know that alert any more.",
    "handled": "Already handled: {name} {status}{by}.",
    "stopping": "{name} is already stopping.",
    "already": "{name} is already {status}.",
    "stop-failed": "The stop failed: {sentence} The alert stays open.",
    "unreachable": "I couldn't reach Rekognition ({error}); try again.",
    "unknown-action": "Unknown action {error!r}.",
}


@says(PressResult)  # said to the presser only, never posted; nothing when the alert says it
def _(r: PressResult, who: Who) -> list[str]:
    if r.ok:
        return []
    by = f" by {who(r.by)}" if r.by else ""
    error = why_not(r.refused) if r.refused else aws_words(r.failure) if r.failure else r.error
    return [
        PRESS_REPLIES[r.reason].format(
            name=r.version_name, status=r.status, by=by, error=error, sentence=ended(error)
        )
    ]


# --- the cost guard's words ------------------------------------------------------------------
DAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def local_time(moment: datetime | None, zone: str, *, day: bool = False) -> str:
    """ "14:30 CET", or "Mon 5 Jan 14:30 CET" with `day`."""
    if moment is None:
        return "?"
    local = moment.astimezone(ZoneInfo(zone))
    name = local.tzname() or zone
    return f"{local:%a} {local.day} {local:%b %H:%M} {name}" if day else f"{local:%H:%M} {name}"


def plural(count: int, noun: str) -> str:
    """ "1 unit", "2 units": a count and its noun."""
    return f"{count} {noun}{'s' if count != 1 else ''}"


def window_phrase(window: Window | None) -> str:
    """ "Mon-Fri 08:00-18:00", "Mon,Wed 07:30-12:00", "Daily 20:00-24:00": a schedule's window
    as it is written (three or more days in a row as a range)."""
    if window is None:
        return "?"
    in_a_row = groupby(enumerate(sorted(window.days)), lambda pair: pair[1] - pair[0])
    labels = [[DAY_LABELS[day] for _, day in run] for _, run in in_a_row]
    days = ",".join(f"{r[0]}-{r[-1]}" if len(r) >= 3 else ",".join(r) for r in labels)
    end = "24:00" if window.end is None else f"{window.end:%H:%M}"
    return f"{'Daily' if len(window.days) == 7 else days} {window.start:%H:%M}-{end}"


def sight_words(sight: n.Sight, auto_stop_at: Any, zone: str) -> list[str]:
    """What the guard can see of the traffic, and so whether (and when) it stops the model."""
    lines = []
    if sight.cloudwatch_failure:
        lines.append(
            f"I can't read CloudWatch just now ({aws_words(sight.cloudwatch_failure)}), so "
            "requests from other applications are invisible to me."
        )
    if auto_stop_at:
        why = SEES_ALL.get(sight.auto_stop, "")
        lines.append(f"Auto-stop at {local_time(auto_stop_at, zone)}{why}.")
    elif sight.auto_stop == "not-visible":
        lines.append(NOT_VISIBLE)
    return lines


def outcome(a: n.IdleAlert, who: Who) -> str:
    return OUTCOMES.get(a.state, "").format(
        actor=named(a.actor, who),
        by=f" by {named(a.actor, who)}" if a.actor else "",
        at=local_time(a.acted_at, a.zone),
        until=local_time(a.snoozed_until, a.zone),
        idle=duration(a.idle_seconds),
        detail=why_not(a.refused) if a.refused else "see the logs",
    )


def alert_buttons(a: n.IdleAlert) -> Block | None:
    if not a.actions:
        return None
    confirm = ConfirmObject(
        title="Stop the model?",
        text=_md(
            f"*{escape(a.version_name)}* stops serving until someone starts it again (a start "
            "takes a few minutes)."
        ),
        confirm="Stop it",
        deny="Cancel",
    )
    stop = {"style": "danger", "confirm": confirm}
    elements = [
        button(
            BUTTON_LABELS[x], ACTION_PREFIX + x, str(a.episode_id), **(stop if x == n.STOP else {})
        )
        for x in a.actions
    ]
    return ActionsBlock(block_id=f"cost_guard:{a.episode_id}", elements=elements)


@says(n.IdleAlert, lambda a: WAIT if a.actions else ":white_check_mark:", buttons=alert_buttons)
def _(a: n.IdleAlert, who: Who) -> list[str]:
    if a.state in (n.OPEN, n.SNOOZED, n.STOP_FAILED):
        head = (
            f"Idle model: {a.version_name} has served no request for "
            f"{duration(a.idle_seconds)} and is still running."
        )
    else:
        head = f"Idle model {a.version_name}: {ended(outcome(a, who))}"
    lines = [
        head,
        f"{plural(a.units, 'inference unit')} at {usd(a.hourly)}/h; idle since "
        f"{local_time(a.idle_since, a.zone, day=True)}, {usd(a.idle_cost)} spent idle so far.",
    ]
    if a.state in (n.SNOOZED, n.STOP_FAILED):
        said_ = outcome(a, who)
        lines.append(ended(said_[:1].upper() + said_[1:]))
    elif a.state != n.OPEN:
        lines.append(f"Idle cost for this episode: {usd(a.idle_cost)}.")
    else:
        lines.append(f"Alerted after {a.threshold_minutes:g} min without a request.")
    if a.state in (n.OPEN, n.STOP_FAILED):
        lines.extend(sight_words(a.sight, a.auto_stop_at, a.zone))
    return lines


@says(n.IdleFollowUp, ":alarm_clock:")
def _(f: n.IdleFollowUp, who: Who) -> list[str]:
    head = (
        f"The snooze by {named(f.snooze_ended_by, who)} is over and {f.version_name} is"
        if f.snooze_ended_by
        else f"Reminder: {f.version_name} is"
    )
    lines = [
        f"{head} still running idle: {duration(f.idle_seconds)} without a request, "
        f"{usd(f.idle_cost)} so far at {usd(f.hourly)}/h.",
        *sight_words(f.sight, f.auto_stop_at, f.zone),
    ]
    if f.next_at and not f.auto_stop_at:
        lines.append(f"Next reminder at {local_time(f.next_at, f.zone)}.")
    return [*lines, "Use the buttons on the alert above."]


@says(n.GuardStopped, ":octagonal_sign:")
def _(s: n.GuardStopped, who: Who) -> list[str]:
    name = s.version_name
    if s.reason == n.AUTO_STOPPED:
        head = f"Stopped {name} automatically after {duration(s.idle_seconds)} without a request."
    elif s.reason == n.SCHEDULE_STOPPED:
        head = f"Stopped {name}: its scheduled running window is over."
    else:
        head = f"Stopped {name} at the request of {named(s.by, who)}."
    saves = f"This saves {usd(s.hourly)} for every hour it would have stayed up"
    if s.saved_until_next_window is not None and s.next_window is not None:
        until = local_time(s.next_window, s.zone, day=True)
        saves += f" ({usd(s.saved_until_next_window)} until the next scheduled start, {until})."
    else:
        saves += f" ({usd(s.hourly * 24)} a day)."
    return [
        head,
        f"It ran {duration(s.run_seconds)} on {plural(s.units, 'unit')} ({usd(s.run_cost)}), "
        f"{duration(s.idle_seconds)} of it idle ({usd(s.idle_cost)}).",
        saves,
        f"Start it again with `/cxr start {name}` (ready in a few minutes).",
    ]


@says(n.StopFailed, WARN)
def _(f: n.StopFailed, who: Who) -> list[str]:
    error = failure(f.failure) if f.failure else why_not(f.refused) if f.refused else ""
    return [
        f"I couldn't stop {f.version_name} ({error or 'unknown error'}); it still costs "
        f"{usd(f.hourly)}/h. I'll keep trying; an admin may need to stop it in the Rekognition "
        "console."
    ]


@says(n.ScheduleNotice, lambda s: ":alarm_clock:" if s.ok else WARN)
def _(s: n.ScheduleNotice, who: Who) -> list[str]:
    span = f"{local_time(s.window_start, s.zone)}–{local_time(s.window_end, s.zone)}"
    if not s.ok:
        error = why_not(s.refused) if s.refused else "unknown error"
        return [f"Scheduled start of {s.version_name} for the {span} window failed: {ended(error)}"]
    return [
        f"Starting {s.version_name} for its scheduled window ({span}, {window_phrase(s.window)}): "
        f"{plural(s.units, 'unit')} at {usd(s.hourly)}/h. It takes a few minutes to be ready; "
        "I'll stop it when the window ends."
    ]


def spend_line(row: n.SpendRow) -> str:
    requests = "requests unknown" if row.requests is None else f"{row.requests} requests"
    per_image = (
        f"{usd(row.cost_per_image)} per classified image"
        if row.cost_per_image is not None
        else "no images classified by the bot"
    )
    idle = f"; {usd(row.idle_cost)} of it in idle alerts" if row.idle_cost else ""
    return (
        f"{row.version_name}: {row.hours:.1f} h on {plural(row.units, 'unit')}, {usd(row.cost)}; "
        f"{requests}, {row.images} images classified, {per_image}{idle}."
    )


@says(n.SpendSummary, ":bar_chart:")
def _(s: n.SpendSummary, who: Who) -> list[str]:
    day = f"{s.day:%a} {s.day.day} {s.day:%b %Y}" if s.day else "?"
    head = f"Rekognition spend for {day} ({s.zone}): {usd(s.total)}."
    if not s.rows:
        return [head, "No model ran."]
    running = [f"Still running: {', '.join(s.running_now)}."] if s.running_now else []
    return [head, *map(spend_line, s.rows), *running]


# --- /cxr status -----------------------------------------------------------------------------
def version_line(row: VersionRow, who: Who) -> str:
    v, op = row.version, row.operation
    parts = [
        f"{v.name}: {v.status}",
        "serving" if row.serving else "",
        f"F1 {row.f1:.3f}" if row.f1 is not None else "",
        metrics_phrase(list(row.labels)),
        f"created {v.created:%Y-%m-%d}" if v.created else "",
        units_phrase(v.min_units, v.max_units) if v.min_units is not None else "",
        ran_for(row.running_seconds, row.cost_so_far, "running {time}, about {cost} so far"),
        v.status_message if v.status in ("FAILED", "TRAINING_FAILED") else "",
        f"{DOING.get(op.kind, op.kind)}, asked by {who(op.user)}" if op else "",
    ]
    return ", ".join(p for p in parts if p)


def meter_line(m: MeterLine, zone: str) -> str:
    """A running version on the cost guard's meter: its cost so far, and idle or in use."""
    text = (
        f"{m.version_name}: running {plural(m.units, 'unit')} ({usd(m.hourly)}/h) since "
        f"{local_time(m.running_since, zone, day=True)}, {usd(m.run_cost)} so far; "
    )
    if m.idle_seconds >= 60:
        text += f"idle {duration(m.idle_seconds)} ({usd(m.idle_cost)})"
    else:
        text += "in use"
    if m.snoozed_until:
        return text + f", kept running until {local_time(m.snoozed_until, zone)}"
    return text + (f", auto-stop at {local_time(m.auto_stop_at, zone)}" if m.auto_stop_at else "")


def status_notes(report: StatusReport) -> list[str]:
    """Local only, Rekognition unreadable, or the meter and the prices."""
    if report.local_card is not None:
        return [
            "The local model is the only classifier: /cxr start, stop and train manage a "
            "Rekognition Custom Labels model and need CXR_PROJECT_ARN (and AWS_REGION)."
        ]
    if report.versions_failure:
        return [f"I couldn't read the project's versions: {aws_words(report.versions_failure)}"]
    notes = [f"Cost guard: {meter_line(m, report.zone)}" for m in report.meter]
    if report.prices is not None:
        unit, training = usd(report.prices.inference_unit_hour), usd(report.prices.training_hour)
        notes.append(
            f"Prices are estimates: {unit} per inference-unit hour while running, {training} "
            "per training hour."
        )
    return notes


def card_lines(card: dict[str, Any]) -> list[str]:
    """The local model card in a few lines (fields read defensively: the card may change)."""
    if not card:
        return ["Local model: no model card found."]
    name = f"{card.get('name', 'local model')} {card.get('version', '')}".strip()
    created = f", created {card['created']}" if card.get("created") else ""
    lines = [f"Local model {name}{created}"]
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    for key, title in CARD_SPLITS.items():
        split = metrics.get(key) if isinstance(metrics.get(key), dict) else {}
        shown = [m for m in CARD_MEASURES if isinstance(split.get(m), int | float)]
        if shown:
            size = f" (n = {split['n']})" if split.get("n") else ""
            measured = ", ".join(f"{m} {percent(split[m])}" for m in shown)
            lines.append(f"  {title}: {measured}{size}")
    counts = card.get("data", {}).get("counts") if isinstance(card.get("data"), dict) else None
    if isinstance(counts, dict) and counts:
        lines.append("  Trained on " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    limitations = card.get("limitations")
    if isinstance(limitations, list):
        lines.extend(f"  Limitation: {item}" for item in limitations[:5] if isinstance(item, str))
    return lines


def operation_line(op: Operation, who: Who) -> str:
    at = f"{op.started_at:%Y-%m-%d %H:%M} UTC"
    return f"{op.kind} {op.version_name} ({op.phase}), asked by {who(op.user)} {at}"


def audit_line(a: AuditEntry, who: Who) -> str:
    return f"{a.at:%Y-%m-%d %H:%M} {who(a.actor)} {a.action} {a.target}: {a.result}"


@says(StatusReport, ":robot_face:", page=True)
def _(report: StatusReport, who: Who) -> list[str]:
    """Status is a page: the serving model, the versions, the work in flight, the notes."""
    lines = [f"Serving: {report.serving}"]
    if report.serving_status:
        meanwhile = NO_FALLBACK[report.fallback]
        lines[0] += f" (it is {report.serving_status}: {meanwhile})"
    if report.project:
        rows = [
            f":arrow_forward: *{version_line(r, who)}*" if r.serving else version_line(r, who)
            for r in report.rows
        ]
        rows += [f"… and {report.hidden_versions} older versions"] if report.hidden_versions else []
        empty = " no model versions yet; train one with `/cxr train s3://bucket/prefix`."
        lines.append(f"Rekognition project {report.project}:" + ("\n  ".join(["", *rows]) or empty))
    if report.local_card is not None:
        lines.append("\n".join(card_lines(report.local_card)))
    lines.extend(f"In progress: {operation_line(op, who)}" for op in report.operations)
    lines.extend(status_notes(report))
    if report.audit:
        lines.append("\n  ".join(["Recent actions:", *(audit_line(a, who) for a in report.audit)]))
    return lines


# --- answers to the person who asked (ephemeral) ---------------------------------------------
def iu(low: int, high: int | None) -> str:
    return f"{low} IU" if high is None or high == low else f"{low}–{high} IU"


REFUSALS: dict[str, str | Callable[[n.Refused], str]] = {  # "{field}": the refusal's
    "rekognition-only": "`/cxr {action}` manages a Rekognition Custom Labels model, and this bot "
    "runs only its local model ({detail}). To use Rekognition, an admin sets CXR_PROJECT_ARN "
    "and AWS_REGION (see the README).",
    "gone": "That model version doesn't exist any more. Run `/cxr status`.",
    "bad-units": "Inference units: the minimum must be at least 1 and the maximum at least the "
    "minimum, e.g. `/cxr start cxr.v2 1 3`.",
    "over-cap": lambda r: (
        f"That's more than the {r.cap} inference units I'm allowed to start "
        f"(about {usd(r.hourly)}/hour at {r.cap}). Ask an admin to "
        "raise CXR_MAX_INFERENCE_UNITS if you really need more."
    ),
    "no-versions": "The project has no model versions yet. Train one with "
    "`/cxr train s3://bucket/prefix`.",
    "none-ready": "No version is ready to start (none has finished training). See `/cxr status`.",
    "no-such-version": lambda r: (
        f"There's no version `{r.wanted}` in the project. Versions: {', '.join(r.names) or 'none'}."
    ),
    "already-running": lambda r: (
        f"{r.version_name} is already running"
        + ("" if r.ran_seconds is None else f" for {duration(r.ran_seconds)}")
        + f" ({iu(r.min_units, r.max_units)}). "
        f"Nothing to do; `/cxr stop {r.version_name}` stops it."
    ),
    "already-starting": lambda r: (
        f"{r.version_name} is already starting (not asked by me, or before a restart). "
        "I'll post in this channel when it's running."
        if r.posting
        else f"{r.version_name} is already starting."
    ),
    "stopping": "{version_name} is stopping right now; start it again once it has stopped.",
    "still-training": "{version_name} is still training.",
    "failed-to-train": lambda r: (
        f"{r.version_name} failed to train, so it can't be started: {r.detail or 'no reason given'}"
    ),
    "cannot-start": "{version_name} can't be started in its state ({status}).",
    "already-stopping": "{version_name} is already stopping. I'll post in this channel when it "
    "has stopped.",
    "not-running": "{version_name} isn't running (it is {status}), so there's nothing to stop.",
    "nothing-running": "No model version is running, so there's nothing to stop (and nothing "
    "being billed for inference).",
    "bad-source": "{detail}.",
    "no-output": "Training needs somewhere to write the manifest and the model's output: an "
    "admin must set CXR_TRAINING_OUTPUT_S3 (s3://bucket/prefix, in the bot's region).",
    "training-elsewhere": "{version_name} is already training in this project (started outside "
    "the bot or before a restart). One training at a time: try again when it ends.",
    "name-in-use": "Another operation is using that name; try again.",
    "bad-name": "`{wanted}` can't be a version name: use 1 to 255 letters, digits, dots, dashes "
    "and underscores.",
    "name-taken": "The name `{wanted}` is already used by a version in this project. Pick "
    "another, or leave it out and I'll choose one.",
    "busy": "{version_name} is busy; try again in a moment.",
    "several-running": lambda r: (
        f"Several versions are running: {', '.join(r.names)}. "
        f"Say which: `/cxr stop {r.names[0] if r.names else ''}`."
    ),
}


@says(n.Refused, toned)
def _(r: n.Refused, who: Who) -> list[str]:
    said_ = REFUSALS[r.reason]
    return [said_(r) if callable(said_) else said_.format_map(vars(r))]


SENTENCES = {  # answers said in one sentence of their fields
    n.VersionsUnreadable: "I couldn't read the model versions: {error}",
    n.SourceUnreadable: "I couldn't check {source}: {error}",
    n.RequestFailed: "Rekognition didn't {action} {version_name}: {error}",
}


def sentence(answer: Any, who: Who) -> list[str]:
    facts = {**vars(answer), "error": aws_words(answer.failure)}
    return [SENTENCES[type(answer)].format_map(facts)]


for kind in SENTENCES:
    says(kind, toned)(sentence)
