"""tests/test_lifecycle_slack.py again, with the bot's state in PostgreSQL (CXR_DATABASE_URL)."""

from tests import test_lifecycle_slack
from tests.on_postgres import rerun_on_postgres

rerun_on_postgres(test_lifecycle_slack, globals())
