"""A replica's leadership loop and nothing else, as a process: `python -m tests.elector URL NAME
TTL [ACT_AFTER]`. Prints `elected EPOCH TIME` when it wins a term and, ACT_AFTER seconds later,
`acted KEY` or `refused KEY` for one fenced action, so tests and benchmarks can pause
(SIGSTOP), resume and kill leaders from outside."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta

from bot.core.clock import SystemClock
from bot.core.leadership import Leadership
from bot.state.postgres.db import PgDatabase
from bot.state.postgres.leadership import PgLeaderStore

ACTION = "stop:cxr.v1:run-1"


async def main(url: str, name: str, ttl: float, act_after: float | None) -> None:
    db = await PgDatabase(url, max_connections=2).open()
    lead = Leadership(PgLeaderStore(db), "fleet", name, SystemClock(), timedelta(seconds=ttl))
    epoch = 0
    while True:
        term = await lead.step()
        if term is not None and term.epoch != epoch:
            epoch = term.epoch
            print(f"elected {epoch} {time.time():.3f}", flush=True)
            if act_after is not None:
                await asyncio.sleep(act_after)  # deciding; a pause here is the dangerous one
                verdict = "acted" if await lead.act_once(ACTION) else "refused"
                print(f"{verdict} {ACTION}", flush=True)
        await asyncio.sleep(lead.renew_every.total_seconds())


if __name__ == "__main__":
    act = float(sys.argv[4]) if len(sys.argv) > 4 else None
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), act))
