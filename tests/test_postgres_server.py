"""The tests' own PostgreSQL server: unprivileged, loopback only, one fresh database per test."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg


def server_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_the_server_runs_unprivileged_on_loopback(postgres_server, postgres_url):
    assert server_uid(postgres_server.process.pid) != 0
    if os.geteuid() != 0:
        assert server_uid(postgres_server.process.pid) == os.geteuid()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0] > 0
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchone()
        assert tables == (0,), "each test gets an empty schema"
