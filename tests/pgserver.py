"""A throwaway PostgreSQL server for tests and benchmarks, started from the installed binaries.

PostgreSQL refuses to run as root, and CI runs as root: the server then runs as an
unprivileged system user (the Debian package's `postgres`, or one created here), in a data
directory that user owns under the system temporary directory (pytest's own is 0700 for root,
so the server could not reach it). It listens on 127.0.0.1 on a free port, trusts local
connections, and skips durability work (fsync off): a crash of the test machine loses nothing
that matters.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "cxr"
SERVICE_USER = "cxr-pgtest"  # created when running as root and Debian's `postgres` is absent


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or the client library) are not installed here."""


def find_binaries() -> Path:
    """The directory holding `initdb` and `postgres`: $CXR_PG_BIN, Debian's
    /usr/lib/postgresql/<version>/bin (the newest), or the PATH."""
    candidates: list[Path] = []
    if os.environ.get("CXR_PG_BIN"):
        candidates.append(Path(os.environ["CXR_PG_BIN"]))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    candidates += versions
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "postgres").exists():
            return directory
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (looked in $CXR_PG_BIN, "
        "/usr/lib/postgresql/<version>/bin and the PATH): run .ci/install-postgres"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit()) or (0,)


def service_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", SERVICE_USER):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """One running `postgres` process; `url()` gives a connection string for a database."""

    bin_dir: Path
    base: Path
    port: int
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, *, timeout_s: float = 60.0) -> PostgresServer:
        bin_dir = find_binaries()
        account = service_account()
        base = Path(tempfile.mkdtemp(prefix="cxr-pg-"))
        data = base / "data"
        if account:
            os.chown(base, *account)
        as_user = {"user": account[0], "group": account[1], "extra_groups": []} if account else {}
        initdb = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            cwd=base,
            **as_user,
        )
        if initdb.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {initdb.stderr.decode(errors='replace')[-2000:]}")
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probing and binding
            port = free_port()
            log = open(base / "postgres.log", "ab")  # noqa: SIM115 - the server writes it
            process = subprocess.Popen(
                [
                    str(bin_dir / "postgres"),
                    "-D",
                    str(data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-k",
                    str(base),
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=base,
                **as_user,
            )
            log.close()
            server = cls(bin_dir, base, port, process)
            if server._wait_ready(timeout_s):
                return server
            last_error = server.log_tail()
            server._terminate()
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"postgres did not start: {last_error}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def create_schema(self, name: str) -> str:
        """A URL whose tables live in a new, empty schema of one shared database: as good as a
        fresh database for a test, and far quicker to make than CREATE DATABASE."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url()}?options=-csearch_path%3D{name}"

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return (self.base / "postgres.log").read_text(errors="replace")[-chars:]
        return ""

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            ready = subprocess.run(
                [
                    str(self.bin_dir / "pg_isready"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    SUPERUSER,
                ],
                capture_output=True,
            )
            if ready.returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def _terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.base, ignore_errors=True)
