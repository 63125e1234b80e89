"""Who may manage the model: the configured admins, by Slack user ID or user group."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.client import error_code

log = logging.getLogger(__name__)

GROUP_CACHE_SECONDS = 300.0
# While Slack can't answer, a membership looked up this recently still counts.
STALE_GROUP_SECONDS = 3600.0


@dataclass(frozen=True)
class AdminCheck:
    """The answer to "may this user manage the model?", with the reason when it is no."""

    allowed: bool
    unverifiable: str | None = None  # why the check could not be made (Slack's error code)


# The last check made in this request's context: `refusal()` without a user still says why.
_LAST_CHECK: ContextVar[AdminCheck | None] = ContextVar("cxr_last_admin_check", default=None)


class Admins:
    """`CXR_ADMINS` holds user IDs (U…/W…) and user group IDs (S…); group members are looked
    up with usergroups.users.list and cached for five minutes.

    A lookup that fails (Slack down, a proxy's text/plain 503, a missing scope) is never taken
    for "not a member": the last good answer (up to an hour old) is used, and otherwise the check
    could not be made, and the refusal says so instead of calling the user a non-admin.
    """

    def __init__(self, ids: list[str], client: AsyncWebClient) -> None:
        self.users = {i for i in ids if not i.startswith("S")}
        self.groups = [i for i in ids if i.startswith("S")]
        self._client = client
        self._members: dict[str, tuple[float, set[str]]] = {}
        self._unverifiable: dict[str, str] = {}  # user -> why their last check failed

    @property
    def configured(self) -> bool:
        return bool(self.users or self.groups)

    async def check(self, user_id: str) -> AdminCheck:
        if user_id in self.users:
            return AdminCheck(True)
        failure = None
        for group in self.groups:
            members, error = await self._group_members(group)
            if members is not None and user_id in members:
                return AdminCheck(True)
            failure = failure or error
        return AdminCheck(False, failure)

    async def allows(self, user_id: str) -> bool:
        result = await self.check(user_id)
        _LAST_CHECK.set(result)
        if result.unverifiable:
            self._unverifiable[user_id] = result.unverifiable
        else:
            self._unverifiable.pop(user_id, None)
        return result.allowed

    async def _group_members(self, group: str) -> tuple[set[str] | None, str | None]:
        """(members, None), or (last known members or None, why the lookup failed)."""
        cached = self._members.get(group)
        if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1], None
        try:
            response = await self._client.usergroups_users_list(usergroup=group)
            users = response.get("users")
            if not isinstance(users, list):
                raise ValueError("usergroups.users.list answered without a user list")
        except Exception as exc:  # any failure, whatever the body: never "not a member"
            code = error_code(exc)
            log.warning("admins.group_lookup_failed", extra={"group": group, "error": code})
            stale_ok = cached and time.monotonic() - cached[0] < STALE_GROUP_SECONDS
            return (cached[1] if stale_ok else None), code
        members = {u for u in users if isinstance(u, str)}
        self._members[group] = (time.monotonic(), members)
        return members, None

    def refusal_reason(self, user_id: str) -> str:
        """For the audit log: why this user was refused."""
        reason = self._unverifiable.get(user_id)
        return f"admin check unavailable ({reason})" if reason else "not an admin"

    def refusal(self, user_id: str | None = None) -> str:
        if not self.configured:
            return (
                "Only the bot's admins can do that, and none are configured yet. "
                "Set `CXR_ADMINS` to Slack user IDs or a user group."
            )
        if user_id:
            reason = self._unverifiable.get(user_id)
        else:
            last = _LAST_CHECK.get()
            reason = last.unverifiable if last else None
        if reason:
            return (
                "I couldn't check whether you're one of the bot's admins: Slack didn't answer "
                f"my admin group lookup (`{reason}`). Nothing was changed; please try again "
                "in a minute."
            )
        return "Sorry, only the bot's admins can do that. Ask one of them, or run `/cxr status`."
