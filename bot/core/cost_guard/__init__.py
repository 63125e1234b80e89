"""The cost guard: no Rekognition model runs idle unnoticed.

A Custom Labels model bills per inference-unit hour while RUNNING, used or not. Every poll
(`CostGuard.tick`) the guard looks at every version of the project, including versions started
outside the bot, and for each RUNNING one works out when it started, its units and when it
last served a request (the bot's own classifications and CloudWatch, so other clients count).
All its state is in SQLite (`bot.state.cost_guard`), so a restart forgets nothing and repeats
nothing.

One module per job, around one shared `GuardContext`:

- `config`: `GuardConfig`, the thresholds, schedule and summary time.
- `context`: the dependencies every part shares; posting to the ops channel; the router.
- `observer`: what runs since when, on how many units, and its last request (runs open and
  close as versions are seen).
- `idle`: the idle rules: episodes, backed-off reminders, snoozes, auto-stop.
- `alerts`: an episode's alert and reminders, worded and posted, updated in place.
- `stopper`: one way to stop a version (auto-stop, button, schedule) and report it.
- `schedule_actions`: scheduled starts before each window and stops after it.
- `presses`: the Stop now / Keep running buttons.
- `summary`: the daily spend summary.
- `meter`: the running versions as `/cxr status` shows them.
- `guard`: `CostGuard`, the facade the bot, the shell and the tests use.
"""

from bot.core.cost_guard.config import GuardConfig
from bot.core.cost_guard.guard import CostGuard
from bot.core.cost_guard.meter import MeterLine
from bot.core.cost_guard.presses import PressResult

__all__ = ["CostGuard", "GuardConfig", "MeterLine", "PressResult"]
