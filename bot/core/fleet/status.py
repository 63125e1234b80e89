"""`/cxr status` as facts (`Lifecycle.status` gathers them, `bot.slack.fleet` lays them out):
what the bot serves, the project's versions with their metrics and costs, the cost guard's
meter, the operations in flight and the recent actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.core.ports import Notice

if TYPE_CHECKING:
    from bot.core.errors import AwsFailure
    from bot.core.fleet.guard import MeterLine
    from bot.core.fleet.state import AuditEntry, Operation
    from bot.core.model_versions import LabelMetrics, ModelVersion
    from bot.core.pricing import Prices


@dataclass(frozen=True)
class VersionRow:
    version: ModelVersion
    f1: float | None = None  # the version's, or its training summary's
    labels: tuple[LabelMetrics, ...] = ()
    running_seconds: float | None = None  # this run so far, when the bot has a record of it
    cost_so_far: float | None = None
    serving: bool = False
    operation: Operation | None = None  # what the bot is doing to it now

    @property
    def name(self) -> str:
        return self.version.name


@dataclass
class StatusReport(Notice):
    serving: str = ""  # the model that answers
    serving_status: str = ""  # its version's status, when that version isn't running
    fallback: bool = False  # ... and the local model answers meanwhile
    project: str | None = None  # None: the local model only
    rows: list[VersionRow] = field(default_factory=list)
    hidden_versions: int = 0
    versions_failure: AwsFailure | None = None  # why the project's versions couldn't be read
    meter: list[MeterLine] = field(default_factory=list)  # the cost guard's running versions
    zone: str = "UTC"  # the meter's times are in it
    prices: Prices | None = None
    operations: list[Operation] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    local_card: dict[str, Any] | None = None  # the local model's card (local-only mode)
