"""compose.yaml: PostgreSQL, two bot replicas in HTTP mode, and a reverse proxy in front of them.

These machines have a Docker client but no Docker engine or Compose plugin, so `docker compose
config` cannot run here: the file is parsed as YAML and checked against the settings class and
the proxy's configuration instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
BOTS = sorted(name for name in SERVICES if name.startswith("bot-"))


def substituted(value: str, **env: str) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message} substitution."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if op == ":-":
            return arg or ""
        raise KeyError(f"{name} is required: {arg}")

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value).replace("$$", "$")


def setting_names() -> set[str]:
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names |= set(getattr(alias, "choices", [alias])) if alias else {name.upper()}
    return names


def test_two_replicas_in_http_mode_on_one_postgres():
    assert len(BOTS) >= 2
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "POSTGRES_PASSWORD": "pw"}
    for name in BOTS:
        bot = SERVICES[name]
        environment = {k: substituted(str(v), **env) for k, v in bot["environment"].items()}
        assert set(environment) <= setting_names(), "every variable is a documented setting"
        settings = Settings(_env_file=None, **{k.lower(): v for k, v in environment.items()})
        assert settings.transport == "http", f"{name} must run in HTTP mode (no app token)"
        url = settings.cxr_database_url
        assert url is not None
        assert url.get_secret_value() == "postgresql://cxr:pw@postgres:5432/cxr"
        assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/healthz" in " ".join(bot["healthcheck"]["test"])
        assert f":{environment['PORT']}/healthz" in " ".join(bot["healthcheck"]["test"])
        assert bot["build"] == "."
    hostnames = {SERVICES[name]["hostname"] for name in BOTS}
    assert len(hostnames) == len(BOTS), "each replica has its own name (the lease owner)"


def test_secrets_are_required_not_defaulted():
    with pytest.raises(KeyError, match="SLACK_SIGNING_SECRET"):
        substituted(SERVICES["bot-1"]["environment"]["SLACK_SIGNING_SECRET"])
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        substituted(SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"])


def test_postgres_matches_the_url_the_bots_use_and_is_health_checked():
    postgres = SERVICES["postgres"]
    assert postgres["environment"]["POSTGRES_USER"] == "cxr"
    assert postgres["environment"]["POSTGRES_DB"] == "cxr"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])


def test_the_proxy_spreads_requests_over_every_replica_and_skips_a_failed_one():
    proxy = SERVICES["proxy"]
    [mount] = proxy["configs"]
    conf = substituted(COMPOSE["configs"][mount["source"]]["content"])
    upstream = re.search(r"upstream (\w+) \{(.*?)\}", conf, re.S)
    assert upstream
    servers = re.findall(r"server ([\w-]+):(\d+)", upstream.group(2))
    assert sorted(host for host, _ in servers) == BOTS
    for name, port in servers:
        assert SERVICES[name]["environment"]["PORT"] == port
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    next_upstream = re.search(r"proxy_next_upstream ([^;]+);", conf)
    assert next_upstream
    assert {"error", "http_503", "non_idempotent"} <= set(next_upstream.group(1).split())
    assert "$host" in conf and "$$" not in conf, "nginx variables survive Compose's substitution"
    for name in BOTS:
        assert proxy["depends_on"][name]["condition"] == "service_healthy"
    assert proxy["healthcheck"]["test"]
