"""Who may manage the model: the configured admins, by Slack user ID or user group."""

from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 300.0


class Admins:
    """`CXR_ADMINS` holds user IDs (U…/W…) and user group IDs (S…); group members are looked
    up with usergroups.users.list and cached for five minutes."""

    def __init__(self, ids: list[str], client: AsyncWebClient) -> None:
        self.users = {i for i in ids if not i.startswith("S")}
        self.groups = [i for i in ids if i.startswith("S")]
        self._client = client
        self._members: dict[str, tuple[float, set[str]]] = {}

    @property
    def configured(self) -> bool:
        return bool(self.users or self.groups)

    async def allows(self, user_id: str) -> bool:
        if user_id in self.users:
            return True
        for group in self.groups:
            if user_id in await self._group_members(group):
                return True
        return False

    async def _group_members(self, group: str) -> set[str]:
        cached = self._members.get(group)
        if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        try:
            response = await self._client.usergroups_users_list(usergroup=group)
            members = set(response.get("users", []))
        except SlackApiError as exc:
            log.warning("admins.group_lookup_failed", extra={"error": exc.response.get("error")})
            members = cached[1] if cached else set()
        self._members[group] = (time.monotonic(), members)
        return members

    def refusal(self) -> str:
        if not self.configured:
            return (
                "Only the bot's admins can do that, and none are configured yet. "
                "Set `CXR_ADMINS` to Slack user IDs or a user group."
            )
        return "Sorry, only the bot's admins can do that. Ask one of them, or run `/cxr status`."
