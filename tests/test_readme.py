"""The README documents every setting and gives the commands CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    table = README.split("<!-- settings-table -->")[1].split("<!-- /settings-table -->")[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = set(getattr(alias, "choices", [alias])) if alias else {name.upper()}
        assert names & documented, f"{name} is not documented in the README's configuration table"


def test_ci_runs_the_readme_test_command():
    assert "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()
