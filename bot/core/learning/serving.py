"""Serving that remembers: whichever version the router switches to is stored, so it is still
the one served after a restart (and wins over `CXR_PROJECT_VERSION_ARN`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.core.clock import Clock
from bot.core.fleet.lifecycle import RouterServing
from bot.core.learning.ports import ServedVersions


class StoredServing(RouterServing):
    def __init__(
        self,
        router: Any,
        make_primary: Callable[[str], Any],
        store: ServedVersions,
        clock: Clock,
    ) -> None:
        super().__init__(router, make_primary)
        self.store = store
        self.clock = clock

    async def serve(self, version_arn: str, by: str = "lifecycle") -> None:
        """Switch, and store it: what serves now still serves after a restart."""
        self.switch(version_arn)
        await self.store.serve(version_arn, by, self.clock.now())
