"""A month of a team's Rekognition model, with and without the cost guard.

    .venv/bin/python bench/simulate_month.py [--seed 7] [--days 30] [--units 1]
                                             [--alert-minutes 30] [--auto-stop-minutes 60]

The team (Europe/Berlin, weekdays): someone starts the model on arrival (08:30-09:30),
people classify X-rays in bursts through the day with a lunch gap, and whoever leaves last
stops it (17:30-18:30), except on some evenings when they forget, and on one Friday
when it is left running for the whole weekend. When someone needs the model and it is
stopped, they start it and wait for it (5 minutes).

The same team plan (same seed) is played three times against the real `CostGuard` domain
(fake clock, fake catalog, CloudWatch-like request log, SQLite in memory):

- **no guard**: nothing watches the model;
- **alerts only**: idle alerts after N minutes; an admin presses *Stop now* on the first
  alert of each episode within the hour (5-60 minutes later, seeded);
- **auto-stop**: alerts as above, nobody presses anything, the guard stops the model after
  M idle minutes.

Printed per policy: running hours and cost; the cost of idle minutes (running without a
request in that minute, short gaps between bursts included) and of the idle minutes beyond
the first N of each idle stretch (what an instant reaction to the alert could have saved);
the longest idle stretch and what it cost; alerts, stops by the guard, and how often (and
how long) someone had to start the model again because the guard had stopped it.
The longest idle stretch must stay within the bound of each policy (checked; exit 1 if not):
alerts only N + 60 + poll minutes, auto-stop M + poll + stopping minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import logging
import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core.fleet import guard_notices as cn
from bot.core.fleet.guard import CostGuard, GuardConfig
from bot.core.fleet.lifecycle import Lifecycle, LifecycleConfig
from bot.core.model_versions import RUNNING, STARTING, STOPPED, STOPPING, ModelVersion
from bot.core.ports import PostedMessage
from bot.core.pricing import Prices, usd
from bot.core.usage import NoUsage, Usage
from bot.state.db import Database
from bot.state.store import SqliteStore

ZONE = ZoneInfo("Europe/Berlin")
ARN = "arn:aws:rekognition:eu-central-1:123456789012:project/cxr/version/cxr.v1/1700000000001"
START = datetime(2026, 6, 1, tzinfo=ZONE).astimezone(UTC)  # Monday 1 June 2026, 00:00 local
POLL = timedelta(minutes=5)
STARTS_IN = timedelta(minutes=5)
STOPS_IN = timedelta(minutes=1)
MINUTE = timedelta(minutes=1)


# --- the team's plan (the same for every policy) -----------------------------------------------
@dataclass
class Day:
    arrive: datetime
    leave: datetime
    requests: list[datetime]
    forget_to_stop: bool


def plan_month(seed: int, days: int) -> list[Day]:
    rng = random.Random(seed)
    plan = []
    forgotten_weekend = 1  # the second Friday's evening stop is forgotten: a weekend left on
    fridays = 0
    for offset in range(days):
        day = (START + timedelta(days=offset)).astimezone(ZONE).date()
        if day.weekday() >= 5:
            continue
        arrive = _at(day, 8, 30) + timedelta(minutes=rng.randint(0, 60))
        leave = _at(day, 17, 30) + timedelta(minutes=rng.randint(0, 60))
        lunch = _at(day, 12, 0) + timedelta(minutes=rng.randint(-15, 30))
        requests: list[datetime] = []
        at = arrive + timedelta(minutes=rng.randint(0, 10))
        while at < leave - timedelta(minutes=10):
            if lunch <= at < lunch + timedelta(minutes=60):
                at = lunch + timedelta(minutes=60 + rng.randint(0, 20))
                continue
            for i in range(rng.randint(2, 12)):  # a burst: a clinician's batch of images
                requests.append(at + timedelta(minutes=i))
            at += timedelta(minutes=rng.randint(5, 40))
        forget = rng.random() < 0.2
        if day.weekday() == 4:
            forget = forget or fridays == forgotten_weekend
            fridays += 1
        plan.append(Day(arrive, leave, sorted(requests), forget))
    return plan


def _at(day: date, hour: int, minute: int) -> datetime:
    return datetime.combine(day, time(hour, minute), ZONE).astimezone(UTC)


# --- the world the guard watches ---------------------------------------------------------------
class SimClock:
    def __init__(self, now: datetime) -> None:
        self.now_ = now

    def now(self) -> datetime:
        return self.now_

    async def sleep(self, seconds: float) -> None:  # the simulation calls tick() itself
        raise RuntimeError("not used")


class SimCatalog:
    """One version; starts in 5 minutes, stops in 1; bills while RUNNING or STOPPING."""

    def __init__(self, clock: SimClock, units: int) -> None:
        self.clock = clock
        self.units = units
        self.status = STOPPED
        self.changed = clock.now()
        self.guard_stops = 0

    def settle(self) -> None:
        now = self.clock.now()
        if self.status == STARTING and now - self.changed >= STARTS_IN:
            self.status, self.changed = RUNNING, now
        elif self.status == STOPPING and now - self.changed >= STOPS_IN:
            self.status, self.changed = STOPPED, now

    def team_start(self) -> None:
        if self.status == STOPPED:
            self.status, self.changed = STARTING, self.clock.now()

    def team_stop(self) -> None:
        if self.status in (RUNNING, STARTING):
            self.status, self.changed = STOPPING, self.clock.now()

    async def versions(self) -> list[ModelVersion]:
        self.settle()
        return [ModelVersion(ARN, "cxr.v1", self.status, min_units=self.units)]

    async def start(self, version_arn: str, min_units: int, max_units: int | None) -> str:
        self.team_start()
        return self.status

    async def stop(self, version_arn: str) -> str:
        self.guard_stops += 1
        self.team_stop()
        return self.status


class RequestLog:
    """CloudWatch as the guard would see it: SuccessfulRequestCount per minute."""

    def __init__(self, catalog: SimCatalog) -> None:
        self.served: list[datetime] = []
        self.catalog = catalog
        self.running_since: datetime | None = None

    async def usage(self, project: str, version: str, start: datetime, end: datetime) -> Usage:
        lo, hi = bisect.bisect_left(self.served, start), bisect.bisect_left(self.served, end)
        last = self.served[hi - 1] + MINUTE if hi > lo else None
        running = self.catalog.status == RUNNING
        return Usage(
            last_request=last,
            requests=hi - lo,
            units=float(self.catalog.units) if running else None,
            running_since=max(self.running_since, start)
            if running and self.running_since
            else None,
        )


class Outbox:
    def __init__(self) -> None:
        self.posts: list[tuple[object, str | None, str]] = []

    async def post(self, channel, notice, *, thread_ts=None) -> PostedMessage:
        ts = f"{len(self.posts) + 1}.000000"
        self.posts.append((notice, thread_ts, ts))
        return PostedMessage(channel, ts)

    async def update(self, message, notice) -> None: ...

    async def react(self, *args, **kwargs) -> None: ...

    async def attach_images(self, *args, **kwargs) -> None: ...


# --- one month under one policy ----------------------------------------------------------------
@dataclass
class Result:
    policy: str
    running_minutes: int = 0
    idle_minutes: int = 0
    longest_idle: int = 0
    alerts: int = 0
    guard_stops: int = 0
    restarts: int = 0  # times someone needed the model after the guard had stopped it
    waited_minutes: int = 0
    bound_minutes: float | None = None
    stretches: list[int] = field(default_factory=list)


PROJECT_ARN = "arn:aws:rekognition:eu-central-1:123456789012:project/cxr/1700000000000"


class NoServing:
    """The simulation classifies nothing: which version serves doesn't matter."""

    def current(self) -> Any:
        return None

    def version_arn(self) -> str | None:
        return None

    def has_fallback(self) -> bool:
        return False

    async def serve(self, version_arn: str) -> None: ...

    def stopped(self, version_arn: str) -> None: ...


async def simulate(
    policy: str,
    plan: list[Day],
    *,
    days: int,
    units: int,
    alert_minutes: float,
    auto_stop_minutes: float,
    seed: int,
) -> Result:
    clock = SimClock(START)
    catalog = SimCatalog(clock, units)
    requests = RequestLog(catalog)
    outbox = Outbox()
    db = await asyncio.to_thread(Database, ":memory:")
    guard = poller = None
    if policy != "no guard":
        store = SqliteStore(db)
        lifecycle = Lifecycle(
            config=LifecycleConfig(project_arn=PROJECT_ARN, ops_channel="C0OPS0001"),
            catalog=catalog,
            training=None,
            images=None,
            store=store,
            prices=Prices(4.0),
            outbox=outbox,
            clock=clock,
            serving=NoServing(),
        )
        guard = CostGuard(
            catalog=catalog,
            usage=requests,
            own=NoUsage(),
            store=store,
            prices=Prices(4.0),
            outbox=outbox,
            clock=clock,
            config=GuardConfig(
                channel="C0OPS0001",
                interval=POLL,
                alert_after=timedelta(minutes=alert_minutes),
                auto_stop_after=timedelta(minutes=auto_stop_minutes)
                if policy == "auto-stop"
                else None,
                summary_time=None,
                zone=ZONE.key,
                sole_client=True,  # the simulated team is the model's only client
            ),
            stops=lifecycle,
        )
        poller = lifecycle.join_guard(
            guard,
            leases=store.leases,
            owner="simulation",
            idle_seconds=POLL.total_seconds(),
            zone=ZONE.key,
        )
    admin = random.Random(seed + 1)
    presses: list[tuple[datetime, int]] = []  # (when, episode id)
    seen_alerts = 0
    result = Result(policy)
    pending = [r for d in plan for r in d.requests]
    arrivals = {d.arrive: d for d in plan}
    leaves = {d.leave: d for d in plan}
    queue: list[datetime] = []  # requests waiting for the model to come up
    stopped_by_guard = False
    wait_started: datetime | None = None
    idle_run = 0
    end = START + timedelta(days=days)
    index = 0
    while clock.now() < end:
        now = clock.now()
        catalog.settle()
        if catalog.status == RUNNING and requests.running_since is None:
            requests.running_since = catalog.changed
        elif catalog.status != RUNNING:
            requests.running_since = None
        # the team
        if now in arrivals and catalog.status == STOPPED:
            catalog.team_start()  # the first person in starts it: not a restart
            stopped_by_guard = False
        if now in leaves and not leaves[now].forget_to_stop:
            catalog.team_stop()
            stopped_by_guard = False
        while index < len(pending) and pending[index] <= now:
            queue.append(pending[index])
            index += 1
        served_now = False
        if queue:
            if catalog.status == RUNNING:
                requests.served.extend([now] * len(queue))
                queue.clear()
                served_now = True
                if wait_started is not None:
                    result.waited_minutes += int((now - wait_started).total_seconds() // 60)
                    wait_started = None
            elif catalog.status == STOPPED:
                if stopped_by_guard:
                    result.restarts += 1
                    stopped_by_guard = False
                wait_started = wait_started or now
                catalog.team_start()
        # what it costs
        if catalog.status in (RUNNING, STOPPING):
            result.running_minutes += 1
            if served_now:
                if idle_run:
                    result.stretches.append(idle_run)
                idle_run = 0
            else:
                result.idle_minutes += 1
                idle_run += 1
        elif idle_run:
            result.stretches.append(idle_run)
            idle_run = 0
        # the guard and the admins
        if poller is not None and (now - START) % POLL == timedelta(0):
            stops_before = catalog.guard_stops
            await poller.tick()
            if catalog.guard_stops > stops_before:
                stopped_by_guard = True
            roots = [n for n, thread, _ in outbox.posts if thread is None]
            for notice in roots[seen_alerts:]:
                if isinstance(notice, cn.IdleAlert):
                    result.alerts += 1
                    if policy == "alerts only":
                        delay = timedelta(minutes=admin.randint(5, 60))
                        presses.append((now + delay, notice.episode_id))
            seen_alerts = len(roots)
        for when, episode_id in [p for p in presses if p[0] <= now]:
            presses.remove((when, episode_id))
            stops_before = catalog.guard_stops
            assert guard is not None
            await guard.press(episode_id, cn.STOP, "U0ADMIN01")
            if catalog.guard_stops > stops_before:
                stopped_by_guard = True
        clock.now_ = now + MINUTE
    if idle_run:
        result.stretches.append(idle_run)
    result.longest_idle = max(result.stretches, default=0)
    result.guard_stops = catalog.guard_stops
    if policy == "alerts only":
        result.bound_minutes = alert_minutes + 60 + POLL.total_seconds() / 60 + 1
    elif policy == "auto-stop":
        result.bound_minutes = auto_stop_minutes + POLL.total_seconds() / 60 + 1
    db.close()
    return result


def report(results: list[Result], units: int, args: argparse.Namespace) -> bool:
    hourly = 4.0 * units
    print(
        f"Simulated month: {args.days} days from Mon 1 Jun 2026 ({ZONE.key}), seed {args.seed}, "
        f"{units} inference unit(s) at {usd(hourly)}/h, poll every {POLL.seconds // 60} min, "
        f"alert after {args.alert_minutes:g} min, auto-stop after {args.auto_stop_minutes:g} min"
    )
    header = (
        f"{'policy':<12} {'running h':>9} {'cost':>10} {'idle h':>7} {'idle cost':>10} "
        f"{'beyond N':>9} {'longest idle':>13} {'its cost':>9} {'alerts':>6} {'stops':>5} "
        f"{'restarts':>8} {'waited':>7}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    baseline = results[0].running_minutes / 60 * hourly
    for r in results:
        cost = r.running_minutes / 60 * hourly
        longest = f"{r.longest_idle // 60} h {r.longest_idle % 60:02d} min"
        beyond = sum(max(0, s - args.alert_minutes) for s in r.stretches) / 60 * hourly
        print(
            f"{r.policy:<12} {r.running_minutes / 60:>9.1f} {usd(cost):>10} "
            f"{r.idle_minutes / 60:>7.1f} {usd(r.idle_minutes / 60 * hourly):>10} "
            f"{usd(beyond):>9} {longest:>13} {usd(r.longest_idle / 60 * hourly):>9} "
            f"{r.alerts:>6} {r.guard_stops:>5} {r.restarts:>8} {r.waited_minutes:>5} m"
        )
        if r.bound_minutes is not None and r.longest_idle > r.bound_minutes:
            ok = False
    print()
    for r in results[1:]:
        cost = r.running_minutes / 60 * hourly
        print(
            f"{r.policy}: saves {usd(baseline - cost)} of {usd(baseline)} "
            f"({(baseline - cost) / baseline:.0%}); every idle stretch ≤ {r.bound_minutes:g} min "
            f"(bound), longest {r.longest_idle} min, at most "
            f"{usd((r.bound_minutes or 0) / 60 * hourly)} left on the table per stretch: "
            + ("OK" if r.longest_idle <= (r.bound_minutes or 0) else "EXCEEDED")
        )
    return ok


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--units", type=int, default=1)
    parser.add_argument("--alert-minutes", type=float, default=30)
    parser.add_argument("--auto-stop-minutes", type=float, default=60)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    plan = plan_month(args.seed, args.days)
    results = [
        await simulate(
            policy,
            plan,
            days=args.days,
            units=args.units,
            alert_minutes=args.alert_minutes,
            auto_stop_minutes=args.auto_stop_minutes,
            seed=args.seed,
        )
        for policy in ("no guard", "alerts only", "auto-stop")
    ]
    return 0 if report(results, args.units, args) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
