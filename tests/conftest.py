from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from botocore.stub import Stubber

from bot.localslack import LocalSlack
from tests.harness import rekognition_client
from tests.pgserver import PostgresServer, PostgresUnavailable
from tests.replicas import Replica, postgres_replica, sqlite_replica


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """CI (CXR_TESTS_NO_SKIP=1) installs everything, so a skip there means a test that never
    ran: report it as a failure, with the skip's reason."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CXR_TESTS_NO_SKIP") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, and CXR_TESTS_NO_SKIP=1 forbids skips: {reason}"


@pytest.fixture(autouse=True)
def _no_aws_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach AWS: no credentials or profiles from the developer's machine."""
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    logging.getLogger("bot").setLevel(logging.INFO)
    # The wire tests post smooth synthetic "films" that the learned guard may rightly refuse;
    # they use the heuristic guard. tests/test_film_guard.py tests the learned one.
    monkeypatch.setenv("CXR_GUARD", "heuristic")


@pytest.fixture
async def slack() -> AsyncIterator[LocalSlack]:
    async with LocalSlack() as server:
        yield server


@pytest.fixture
def rekognition():
    """A boto3 Rekognition client whose requests are answered by a botocore Stubber."""
    client = rekognition_client()
    with Stubber(client) as stubber:
        client.stubber = stubber  # type: ignore[attr-defined]
        yield client


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started from the installed binaries."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[postgres]'")
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty schema on the session's server (as good as a database), for one test."""
    return postgres_server.create_schema(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgres"])
async def replicas(request, tmp_path) -> AsyncIterator[Callable[[], Replica]]:
    """Call once per replica: its stores on one shared database (SQLite file or PostgreSQL)."""
    closers: list[Callable[[], Awaitable[None]]] = []
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None

    def make() -> Replica:
        replica, close = postgres_replica(url) if url else sqlite_replica(tmp_path / "cxr.db")
        closers.extend(close)
        return replica

    yield make
    for close in closers:
        await close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Skips outside a test's run (a whole module skipped at collection) fail CI too."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped and os.environ.get("CXR_TESTS_NO_SKIP") == "1" and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
