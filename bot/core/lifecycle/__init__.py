"""The Rekognition model's lifecycle: status, start, stop and train, followed to the end.

Commands claim an operation (`bot.state.operations`) before asking AWS for anything, so a
second request finds it and is told what is already happening. One watcher task follows every
open operation: each `tick` reads the project's versions once and moves each operation along
(training also walks through its datasets), posting the outcome in the channel the command came
from. Operations survive restarts: `resume` (a background job at start-up) picks them up.

No Slack and no boto3 here: AWS is reached through `ModelCatalog`, `TrainingBackend` and
`ImageStore`, the chat through `Outbox`. AWS errors are read by duck typing (`aws_error`).

One module per job, each a small collaborator on one shared `LifecycleContext` (`context`):
- `ports`: what the lifecycle needs from outside (training backend, serving) and its config;
- `status`: `/cxr status`, worded by `status_report`;
- `start_stop`: `/cxr start` (proposal, confirmation) and `/cxr stop`, up to the request;
  `start_stop_outcomes`: the watcher's steps from the request to running or stopped;
- `training`: `/cxr train`, the checks and the launch; `training_phases`: the rest of it;
- `watcher`: the task that follows operations in flight, and resumes them after a restart;
- `notices`: what the operations say; `service`: the `Lifecycle` facade the chat layer calls.

Code outside the package imports the names below from here, and the notices from
`bot.core.lifecycle.notices`.
"""

from bot.core.lifecycle.context import aws_error
from bot.core.lifecycle.ports import (
    DatasetInfo,
    Evaluation,
    LifecycleConfig,
    RouterServing,
    Serving,
    TrainingBackend,
)
from bot.core.lifecycle.service import Lifecycle

__all__ = [
    "DatasetInfo",
    "Evaluation",
    "Lifecycle",
    "LifecycleConfig",
    "RouterServing",
    "Serving",
    "TrainingBackend",
    "aws_error",
]
