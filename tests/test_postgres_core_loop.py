"""tests/test_core_loop.py again, with the bot's state in PostgreSQL (CXR_DATABASE_URL)."""

from tests import test_core_loop
from tests.on_postgres import rerun_on_postgres

rerun_on_postgres(test_core_loop, globals())
