"""A flood of slow clients, in a process of its own (as an attacker's would be): a third send a
request head a byte at a time, a third a body a byte at a time, a third nothing; each comes
back as soon as it is thrown out. Prints "ready" once every client has connected, and a JSON
tally when its time is up.

    python -m tests.slow_clients PORT CLIENTS SECONDS
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time


async def client(port: int, kind: int, until: float, tally: dict[str, int]) -> None:
    first = True
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            tally["refused"] += 1
            await asyncio.sleep(0.2)
            continue
        tally["connected"] += 1
        if first:
            tally["clients_in"] += 1
            first = False
        try:
            if kind == 1:
                writer.write(
                    b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 9999\r\n\r\n"
                )
            while time.monotonic() < until:
                if kind != 2:
                    writer.write(b"a")
                    await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(100), 0.3) == b"":
                        break
                except TimeoutError:
                    pass
        except OSError:
            pass
        finally:
            if time.monotonic() < until:
                tally["thrown_out"] += 1
            writer.close()
        await asyncio.sleep(0.2)


async def main(port: int, clients: int, seconds: float) -> None:
    until = time.monotonic() + seconds
    tally = {"connected": 0, "clients_in": 0, "refused": 0, "thrown_out": 0}
    tasks = [asyncio.create_task(client(port, i % 3, until, tally)) for i in range(clients)]
    while tally["clients_in"] < clients and time.monotonic() < until:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps(tally), flush=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
