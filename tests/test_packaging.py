"""What the Docker image is built from: the wheel (with the bundled model and the /cxr
commands) and a Dockerfile that keeps to its promises. No Docker engine is needed: the image's
build step is `pip wheel .`, which this test runs."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bot.ml.model_card import load_model_card

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.MULTILINE)[1:]


def test_dockerfile_final_stage_is_slim_non_root_with_a_healthcheck():
    build, final = stages()
    assert build.startswith("python:3.11-slim AS build")
    assert final.startswith("python:3.11-slim")
    assert "pip wheel" in build and "--no-index --find-links=/tmp/wheels" in final
    user = re.search(r"^USER (\S+)", final, re.MULTILINE)
    assert user and user.group(1) not in ("root", "0")
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert not re.search(r"apt-get install|gcc|build-essential", final)  # no build tools
    assert 'CMD ["cxr-bot"]' in final


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("cxr_bot-*.whl")
    return built


def test_wheel_carries_the_model_the_commands_and_the_entry_points(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith("entry_points.txt")
        )
    for needed in (
        f"bot/model/{load_model_card().file}",
        "bot/model/film_guard.npz",
        "bot/model/model_card.json",
        "bot/model/MODEL_CARD.md",
        "commands/__init__.py",
        "bot/shell/session.py",
        "bot/localslack/server.py",
    ):
        assert needed in names, needed
    assert not any(n.startswith("tests/") for n in names)
    assert "cxr-bot = bot.main:main" in entry_points
    assert "cxr = bot.cli:main" in entry_points
