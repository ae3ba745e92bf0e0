"""Runs inside Ray Serve's HTTP proxy: a replica that dies mid-session ends its sockets
with an error event and close code 1011 instead of a dropped connection.

When a replica process dies, the proxy's request for that WebSocket simply ends: nothing
closes the socket, and the client sees 1006 (connection lost) with no reason. This ASGI
middleware wraps the proxy's app, notes whether the socket was accepted, closed by the
replica, or left by the client, and when none of the last two happened, says so itself.

Loaded by the proxy from ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (set by
``RayServer`` for the local cluster it starts; on a cluster of your own, set it on the
nodes before ``ray start``). Kept apart from ``ray_serve`` so the proxy imports little.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

CALLBACK_PATH = "voice_agent.server.ray_proxy:proxy_middlewares"
CLOSE_INTERNAL = 1011  # RFC 6455: the server hit a condition that ended the session

Scope = dict[str, Any]
Message = dict[str, Any]


class ReplicaLossGuard:
    """Pure ASGI middleware (Starlette's ``Middleware(ReplicaLossGuard)``)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") != "websocket":
            await self.app(scope, receive, send)
            return
        seen = {"accepted": False, "closed": False, "client_left": False}

        async def watched_receive() -> Message:
            msg = await receive()
            if msg.get("type") == "websocket.disconnect":
                seen["client_left"] = True
            return msg

        async def watched_send(msg: Message) -> None:
            kind = msg.get("type")
            if kind == "websocket.accept":
                seen["accepted"] = True
            elif kind == "websocket.close":
                seen["closed"] = True
            await send(msg)

        await self.app(scope, watched_receive, watched_send)
        if seen["accepted"] and not seen["closed"] and not seen["client_left"]:
            await lost(send)


async def lost(send: Callable[[Message], Awaitable[None]]) -> None:
    """The replica went away without closing: an ``error`` event, then close 1011."""
    event = {"type": "error", "error": {
        "type": "server_error", "code": "replica_lost", "param": None, "event_id": None,
        "message": "the server replica holding this session stopped; its session has "
                   "ended (a new connection goes to a live replica)"}}
    try:
        await send({"type": "websocket.send", "text": json.dumps(event)})
        await send({"type": "websocket.close", "code": CLOSE_INTERNAL, "reason": "replica lost"})
    except Exception:  # noqa: BLE001 - the client may be gone too: nothing left to tell
        pass


def proxy_middlewares() -> list[Any]:
    """The proxy's callback: the middlewares to wrap its app with."""
    from starlette.middleware import Middleware

    return [Middleware(ReplicaLossGuard)]
