"""tests/test_cost_guard_wire.py again, with the bot's state in PostgreSQL (CXR_DATABASE_URL)."""

from tests import test_cost_guard_wire
from tests.on_postgres import rerun_on_postgres

rerun_on_postgres(test_cost_guard_wire, globals())
