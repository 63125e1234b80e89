"""`/cxr status`: versions, what runs and costs, operations in flight, recent actions; then the
served version when a promotion changed it from the configured one, and the reviewed figures."""

from __future__ import annotations

from bot.slack.blocks import context, render, section
from commands.context import CommandContext
from commands.parser import Status

STATUS_REVIEW_DAYS = 30


async def handle(ctx: CommandContext, command: Status) -> None:
    status = render(await ctx.lifecycle.status())
    figures = render(await ctx.services.reviewing.report(STATUS_REVIEW_DAYS))
    blocks = [*status.blocks]
    texts = [status.text]
    served = served_line(ctx)
    if served:
        blocks.append(section(served))
        texts.append(served)
    blocks += [{"type": "divider"}, *[b for b in figures.blocks if b.get("type") != "actions"]]
    texts.append(figures.text)
    blocks.append(context("`/cxr review [days]` for another window and a chart."))
    await ctx.respond(text="\n\n".join(texts), blocks=blocks[:50], response_type="ephemeral")


def served_line(ctx: CommandContext) -> str:
    """Both versions when the stored served version and `CXR_PROJECT_VERSION_ARN` differ, and a
    promotion in flight."""
    flight = ctx.services.serving.in_flight()
    line = _served(ctx)
    if flight is not None:
        line += (
            f"{' ' if line else ''}:hourglass_flowing_sand: Promoting *{_name(flight.candidate_arn)}*"
            f" (asked by <@{flight.user}> at {flight.started_at:%Y-%m-%d %H:%M} UTC): it serves"
            " once it is RUNNING."
        )
    return line


def _served(ctx: CommandContext) -> str:
    served = ctx.services.serving.served()
    configured = ctx.services.settings.cxr_project_version_arn
    if served is None or served.version_arn == configured:
        return ""
    name = _name(served.version_arn)
    line = (
        f":arrows_counterclockwise: Serving *{name}* (since {served.since:%Y-%m-%d %H:%M} UTC, "
        f"{_by(served.by)})"
    )
    if configured:
        line += (
            f"; `CXR_PROJECT_VERSION_ARN` names *{_name(configured)}*, which was only the "
            "initial value"
        )
    return line + "."


def _name(arn: str) -> str:
    parts = arn.split("/")
    return parts[-2] if len(parts) >= 2 else arn


def _by(who: str) -> str:
    return f"promoted by <@{who}>" if who.startswith(("U", "W")) else f"set by {who}"
