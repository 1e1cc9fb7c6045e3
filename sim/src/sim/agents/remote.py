"""The remote agent: the service's COMPAT HTTP API, many sessions in flight.

Per step ``POST /next/<user>`` with ``{"track", "time"}`` (the track just
played and its listen fraction; the first call of a session carries the
session's first track with time 1.0), and one ``POST /last/<user>`` when the
session ends. Every answer is checked: an invalid one stops the run with a
one-line :class:`~sim.client.ServiceError` instead of corrupting the results.
Retries happen inside the client *before* the session advances, so a retried
``/next`` never counts as an extra step.
"""

from __future__ import annotations

from typing import Any

from sim.agents.base import AsyncAgent
from sim.client import AsyncClient, ClientOptions, ServiceError, decode_json


class RemoteAgent(AsyncAgent):
    name = "remote"

    def __init__(self, options: ClientOptions, n_tracks: int) -> None:
        self.client = AsyncClient(options)
        self.n_tracks = n_tracks

    @property
    def requests(self) -> int:
        return self.client.requests

    async def next(self, slot: list[Any], user: int, track: int, time: float) -> int:
        client = self.client
        data = client.build_post(b"/next/%d" % user, {"track": track, "time": time})
        status, body = await client.send(slot, data, f"POST /next/{user}")
        if status != 200:
            self._bad_status(status, body, f"POST /next/{user}")
        obj = decode_json(body, f"POST /next/{user}", client.base)
        rec = obj.get("track") if type(obj) is dict else None
        if type(rec) is not int:
            raise ServiceError(
                f"service at {client.base} answered POST /next/{user} without an integer "
                f"'track': {_short(obj)}"
            )
        if not 0 <= rec < self.n_tracks:
            raise ServiceError(
                f"service at {client.base} recommended track {rec} to user {user}, outside the "
                f"catalog (0..{self.n_tracks - 1}); is it serving the same world?"
            )
        if obj.get("user", user) != user:
            raise ServiceError(
                f"service at {client.base} answered POST /next/{user} for user {obj.get('user')!r}"
            )
        return rec

    async def last(self, slot: list[Any], user: int, track: int, time: float) -> None:
        client = self.client
        data = client.build_post(b"/last/%d" % user, {"track": track, "time": time})
        status, body = await client.send(slot, data, f"POST /last/{user}")
        if status != 200:
            self._bad_status(status, body, f"POST /last/{user}")
        obj = decode_json(body, f"POST /last/{user}", client.base)
        if type(obj) is not dict:
            raise ServiceError(
                f"service at {client.base} answered POST /last/{user} with {_short(obj)}, "
                "expected a JSON object"
            )

    def _bad_status(self, status: int, body: bytes, what: str) -> None:
        text = body[:120].decode("utf-8", "replace").replace("\n", " ")
        raise ServiceError(f"service at {self.client.base} answered HTTP {status} to {what}: {text}")


def _short(obj: Any, limit: int = 100) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."
