"""LocalSlack behind a misbehaving proxy: some Web API calls are answered by the proxy itself,
with the bodies proxies send (text/plain, HTML, truncated JSON) instead of Slack's JSON."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from aiohttp import web

from bot.localslack import LocalSlack
from bot.localslack.server import ApiCall


@dataclass
class ProxyAnswer:
    status: int
    body: str
    content_type: str
    times: int


class ProxiedSlack(LocalSlack):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.proxy_answers: dict[str, list[ProxyAnswer]] = defaultdict(list)

    def proxy_fail(
        self,
        method: str,
        *,
        status: int = 503,
        body: str = "Service Unavailable",
        content_type: str = "text/plain",
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` get this answer from the proxy, not Slack."""
        self.proxy_answers[method].append(ProxyAnswer(status, body, content_type, times))

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        queue = self.proxy_answers.get(method)
        if not queue:
            return await super()._api(request)
        answer = queue[0]
        answer.times -= 1
        if answer.times <= 0:
            queue.pop(0)
        call = ApiCall(method, {}, None)
        self.calls.append(call)
        await self._notify(call, {"ok": False, "status": answer.status})
        return web.Response(
            status=answer.status, text=answer.body, content_type=answer.content_type
        )
