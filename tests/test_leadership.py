"""One leader among replicas, on SQLite and on PostgreSQL: one term at a time, takeover after a
lapse, and fencing: a leader that lost its term (paused, clock behind) cannot act."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.clock import FakeClock
from bot.core.leadership import Leadership, LeaderStore, Term, claim, holds

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("current", "owner", "now", "expected"),
    [
        (None, "a", T0, Term("fleet", "a", 1, T0 + TTL)),  # the first term
        (Term("fleet", "a", 4, T0 + TTL), "a", T0 + 10 * S, Term("fleet", "a", 4, T0 + 40 * S)),
        # a renewal that reaches the database after a later one does not shorten the term
        (Term("fleet", "a", 4, T0 + 40 * S), "a", T0 + 5 * S, Term("fleet", "a", 4, T0 + 40 * S)),
        (Term("fleet", "a", 4, T0 + TTL), "b", T0 + 29 * S, None),  # still a's
        (Term("fleet", "a", 4, T0 + TTL), "b", T0 + TTL, Term("fleet", "b", 5, T0 + 2 * TTL)),
        # a's own lapsed term is not resumed: a new epoch fences what the old one began
        (Term("fleet", "a", 4, T0 + TTL), "a", T0 + TTL, Term("fleet", "a", 5, T0 + 2 * TTL)),
    ],
)
def test_claim(current, owner, now, expected):
    assert claim(current, "fleet", owner, now, TTL) == expected


def test_holds_needs_the_same_owner_and_epoch_and_time_left():
    term = Term("fleet", "a", 3, T0 + TTL)
    assert holds(term, term, T0)
    assert not holds(term, term, T0 + TTL)
    assert not holds(Term("fleet", "a", 4, T0 + TTL), term, T0)  # a re-elected a
    assert not holds(Term("fleet", "b", 3, T0 + TTL), term, T0)
    assert not holds(None, term, T0)


@pytest.fixture
def leader_stores(replicas) -> Callable[[], LeaderStore]:
    return lambda: replicas().leader


async def test_one_term_at_a_time_and_takeover_after_a_lapse(leader_stores):
    a, b = leader_stores(), leader_stores()
    first = await a.claim("fleet", "a", T0, TTL)
    assert first == Term("fleet", "a", 1, T0 + TTL)
    assert await b.claim("fleet", "b", T0 + 29 * S, TTL) is None
    assert await a.claim("fleet", "a", T0 + 20 * S, TTL) == Term("fleet", "a", 1, T0 + 50 * S)
    assert await b.claim("fleet", "b", T0 + 49 * S, TTL) is None  # renewed: still a's
    second = await b.claim("fleet", "b", T0 + 50 * S, TTL)
    assert second == Term("fleet", "b", 2, T0 + 80 * S)
    assert await a.current("fleet") == second
    assert await a.claim("fleet", "a", T0 + 51 * S, TTL) is None  # a lost it


async def test_a_leader_that_lost_its_term_cannot_act(leader_stores):
    a, b = leader_stores(), leader_stores()
    old = await a.claim("fleet", "a", T0, TTL)
    assert await a.act_once(old, "alert:7:1", T0 + S)
    assert not await a.act_once(old, "alert:7:1", T0 + 2 * S), "an action is taken once"
    new = await b.claim("fleet", "b", T0 + TTL, TTL)
    # a wakes up from a pause with a clock that still thinks its term runs: the epoch fences it
    assert not await a.act_once(old, "stop:cxr.v1:3", T0 + 10 * S)
    assert await b.act_once(new, "stop:cxr.v1:3", T0 + TTL + S)
    assert not await b.act_once(new, "alert:7:1", T0 + TTL + S), "nor twice across leaders"


async def test_release_lets_a_follower_take_over_at_once_with_a_new_epoch(leader_stores):
    a, b = leader_stores(), leader_stores()
    term = await a.claim("fleet", "a", T0, TTL)
    await a.release(term)
    assert not await a.act_once(term, "alert:1:1", T0 + S)
    assert await b.claim("fleet", "b", T0 + S, TTL) == Term("fleet", "b", 2, T0 + S + TTL)


async def test_replicas_racing_for_the_lead_elect_exactly_one(leader_stores):
    stores = [leader_stores() for _ in range(3)]
    for round_ in range(10):
        now = T0 + round_ * 2 * TTL  # every round starts after the last term lapsed
        terms = await asyncio.gather(
            *(store.claim("fleet", f"r{i}", now, TTL) for i, store in enumerate(stores))
        )
        won = [t for t in terms if t is not None]
        assert len(won) == 1, terms
        assert won[0].epoch == round_ + 1


async def test_the_elector_takes_over_within_four_thirds_of_a_ttl_and_fences_the_sleeper(
    leader_stores,
):
    clock = FakeClock(T0)
    a = Leadership(leader_stores(), "fleet", "a", clock, TTL)
    b = Leadership(leader_stores(), "fleet", "b", clock, TTL)
    await a.step()
    await b.step()
    assert a.leads() and not b.leads()
    assert await a.act_once("summary:2026-01-05")
    # a is paused (no renewals); b keeps trying every ttl/3 and wins once a's term lapsed
    for _ in range(4):
        await clock.advance(b.renew_every.total_seconds())
        await b.step()  # what b.run() does after each sleep
    assert b.leads()
    assert b.term is not None and b.term.epoch == 2
    assert clock.now() - T0 <= TTL * 4 / 3
    # a wakes: its own view says it lost (its clock moved on), and the database agrees
    assert not a.leads()
    assert not await a.act_once("stop:cxr.v1:1")
    assert await a.step() is None
    assert not await b.act_once("summary:2026-01-05")
    assert await b.act_once("stop:cxr.v1:1")


async def test_running_electors_hand_over_when_the_leader_dies(leader_stores):
    from bot.core.clock import SystemClock

    ttl = timedelta(seconds=0.6)
    a = Leadership(leader_stores(), "fleet", "a", SystemClock(), ttl)
    b = Leadership(leader_stores(), "fleet", "b", SystemClock(), ttl)
    runners = {name: asyncio.create_task(e.run()) for name, e in (("a", a), ("b", b))}

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not condition():  # noqa: ASYNC110 - polls another task's state
                await asyncio.sleep(0.02)

    await until(lambda: a.leads() or b.leads())
    leader, follower = (a, b) if a.leads() else (b, a)
    assert not follower.leads()
    runners[leader.owner].cancel()  # dies without releasing: the follower waits for the lapse
    await asyncio.gather(runners[leader.owner], return_exceptions=True)
    await until(follower.leads)
    assert follower.term is not None and follower.term.epoch == 2
    assert not await leader.act_once("alert:1:1")
    runners[follower.owner].cancel()
    await asyncio.gather(runners[follower.owner], return_exceptions=True)


async def test_hold_is_the_pollers_question_before_each_tick(leader_stores):
    clock = FakeClock(T0)
    a = Leadership(leader_stores(), "fleet", "a", clock, TTL)
    b = Leadership(leader_stores(), "fleet", "b", clock, TTL)
    assert await a.hold(T0) and not await b.hold(T0 + S)
    assert await a.hold(T0 + 20 * S), "renewed by the leader's own tick"
    assert not await b.hold(T0 + 49 * S)
    assert await b.hold(T0 + 50 * S), "a's ticks stopped: b's first tick after the lapse wins"
    await b.release()
    assert await a.hold(T0 + 51 * S)
    assert a.term is not None and a.term.epoch == 3


async def test_a_fenced_outbox_posts_only_while_the_term_holds(leader_stores):
    from bot.core.leadership import FencedOutbox, LeadershipLost
    from bot.core.ports import Notice, PostedMessage

    class Chat:
        def __init__(self) -> None:
            self.posts: list[str] = []

        async def post(self, channel, notice, *, thread_ts=None):
            self.posts.append(notice.text)
            return PostedMessage(channel, "1.0")

    clock = FakeClock(T0)
    a = Leadership(leader_stores(), "fleet", "a", clock, TTL)
    b = Leadership(leader_stores(), "fleet", "b", clock, TTL)
    chat = Chat()
    fenced = FencedOutbox(chat, a)
    with pytest.raises(LeadershipLost):
        await fenced.post("C0OPS", Notice("before a leads"))
    await a.step()
    await fenced.post("C0OPS", Notice("idle alert"))
    # a is paused past its term; b takes over; a's clock is behind, so only the database knows
    assert await b.hold(T0 + TTL)
    with pytest.raises(LeadershipLost):
        await fenced.post("C0OPS", Notice("idle alert, again"))
    assert chat.posts == ["idle alert"]
