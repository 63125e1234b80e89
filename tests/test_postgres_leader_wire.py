"""The fenced leader lease between bot instances on one PostgreSQL database: one alert and one
stop between two instances, and a paused leader that lost its term neither alerts nor stops."""

from tests import test_leader_wire
from tests.on_postgres import rerun_on_postgres
from tests.test_fleet_leader import test_two_instances_on_one_database_alert_and_stop_once

rerun_on_postgres(test_leader_wire, globals())
__all__ = ["test_two_instances_on_one_database_alert_and_stop_once"]
