"""`cxr-bot`: start the bot on the transport the settings choose.

Socket Mode when SLACK_APP_TOKEN is set, HTTP when SLACK_SIGNING_SECRET is set, and with
neither (or with --shell) the local shell: the whole bot in a terminal, no Slack needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from bot import __version__, log
from bot.settings import Settings, SettingsError, load_settings

logger = logging.getLogger("bot")

STOP_DRAIN_S = 4.0  # with the transport's own close (at most 3 s): stopped within 10 s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxr-bot", description=__doc__)
    parser.add_argument("--shell", action="store_true", help="local shell even if tokens are set")
    parser.add_argument("--version", action="version", version=f"cxr-bot {__version__}")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.shell or settings.transport == "shell":
        from bot.shell import run_shell

        return run_shell(settings)
    log.configure(settings.cxr_log_level, settings.cxr_log_format)
    # Past a file-size limit (ulimit -f), a write should fail with EFBIG, which SQLite reports
    # and the bot survives (the claim is refused, Slack retries), not kill the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_slack(settings))
    return 0


async def run_slack(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (unanswered uploads resume next start)."""
    from bot.slack.app import build_app, slack_services, warm_up
    from bot.slack.transports import serve_http, serve_socket_mode

    assert settings.slack_bot_token is not None
    token = settings.slack_bot_token.get_secret_value()
    services, client = await slack_services(settings, token, settings.slack_api_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if settings.transport == "socket":
        assert settings.slack_app_token is not None
        app = build_app(services, client)
        server = await serve_socket_mode(app, services, settings.slack_app_token.get_secret_value())
        closers = [server.close]
    else:
        assert settings.slack_signing_secret is not None
        app = build_app(
            services, client, signing_secret=settings.slack_signing_secret.get_secret_value()
        )
        runner = await serve_http(app, services)
        closers = [runner.cleanup]
    warming = asyncio.create_task(warm_up(app))  # never in the way of a stop
    await services.start()
    logger.info(
        "bot.started",
        extra={"transport": settings.transport, "model": services.router.model.describe()},
    )
    await stop.wait()
    logger.info("bot.stopping")
    warming.cancel()
    # Stop within 10 s even while Slack is unreachable: uploads still in work are handed
    # back (their leases released) and answered by the next instance or start.
    for close in closers:
        await close()
    await services.stop(drain_seconds=STOP_DRAIN_S)
