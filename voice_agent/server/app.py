"""The ASGI app: the page at ``/``, its assets, and the Realtime WebSocket at ``/v1/realtime``.

``create_app(settings, host=...)`` builds everything from arguments, so a process
manager (uvicorn here, Ray Serve's ``@serve.ingress`` for scale-out) can make the app
itself. The socket code only checks who may connect and hands each accepted socket to a
``Connection``; sessions, the scheduler and the models live below it.
"""

# No `from __future__ import annotations` here: FastAPI reads the route functions'
# annotations (``ws: WebSocket``) as objects, and WebSocket is imported inside create_app.
import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from voice_agent.server.connection import CLOSE_FULL, CLOSE_POLICY, Connection
from voice_agent.server.protocol import error_event
from voice_agent.server.settings import ServerSettings

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SUBPROTOCOL_KEY = "openai-insecure-api-key."  # how browsers pass a key (no headers allowed)


def create_app(settings: ServerSettings, host: Any = None,
               load_host: "Callable[[], Any] | None" = None) -> Any:
    """The server as an ASGI app (FastAPI).

    Args:
        settings: who may connect, limits, where session folders go.
        host: a loaded ``ModelHost`` shared by every session; or
        load_host: a function that loads one when the app starts (lifespan), so an app
            can be built before the models (Ray Serve builds one per replica).

    The app's ``state.host`` is the ModelHost; ``state.sessions`` the live connections.
    """
    from fastapi import FastAPI, WebSocket
    from fastapi.responses import FileResponse, JSONResponse, Response

    settings.check()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        if app.state.host is None and load_host is not None:
            app.state.host = await asyncio.to_thread(load_host)
        try:
            yield
        finally:
            if load_host is not None and app.state.host is not None:
                app.state.host.close()

    app = FastAPI(title="voice_agent", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.host = host
    app.state.settings = settings
    app.state.sessions = {}

    @app.get("/")
    async def page() -> Any:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}")
    async def asset(name: str) -> Any:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return Response(status_code=404)
        kind = {"js": "text/javascript", "css": "text/css"}.get(path.suffix[1:], "text/plain")
        return FileResponse(path, media_type=kind)

    @app.get("/health")
    async def health() -> Any:
        h = app.state.host
        return JSONResponse({"ok": h is not None, "sessions": len(app.state.sessions),
                             "max_sessions": settings.limits.max_sessions,
                             "llm": getattr(h, "llm_name", None)})

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        problem = refuse(ws.headers, ws.query_params, settings)
        if problem is not None:
            logger.info("refused a connection: %s", problem)
            await ws.close(code=CLOSE_POLICY, reason=problem)  # before accept: HTTP 403
            return
        await ws.accept(subprotocol=_chosen_subprotocol(ws.headers))
        host = app.state.host
        if host is None or len(app.state.sessions) >= settings.limits.max_sessions:
            why = ("the models are still loading" if host is None else
                   f"the server is full ({settings.limits.max_sessions} sessions)")
            await ws.send_json(error_event("server_busy", why + "; try again later",
                                           kind="server_error"))
            await ws.close(code=CLOSE_FULL, reason="try again later")
            return
        sid = f"sess_{time.strftime('%Y%m%d-%H%M%S')}_{secrets.token_hex(4)}"
        conn = Connection(ws, host, settings, sid)
        app.state.sessions[sid] = conn
        try:
            await conn.run()
        except Exception as e:  # noqa: BLE001 - one session's failure is not the server's
            logger.exception("session %s failed", sid)
            with contextlib.suppress(Exception):
                await ws.send_json(error_event("session_failed", f"{type(e).__name__}: {e}",
                                               kind="server_error"))
                await ws.close(code=1011, reason="internal error")
        finally:
            app.state.sessions.pop(sid, None)
            del conn  # the session's object graph is cyclic garbage from here
            if not app.state.sessions:
                # Free it now (memory.py): ~50 MiB of native memory per session otherwise
                # waits for a rare full collection. Only when no session is live, because
                # a collection holds the GIL for ~0.1-0.3 s, which a live turn would feel.
                from voice_agent.memory import release_session_memory

                release_session_memory()

    return app


def refuse(headers: Any, query: Any, settings: ServerSettings) -> "str | None":
    """Why a WebSocket must be refused (origin or token), or None to accept it."""
    origin = headers.get("origin")
    if origin is not None and not origin_allowed(origin, headers.get("host", ""), settings):
        return f"origin {origin[:80]} is not allowed"
    if settings.token and not token_ok(headers, query, settings.token):
        return "missing or wrong token"
    return None


def origin_allowed(origin: str, host_header: str, settings: ServerSettings) -> bool:
    """Browsers always send Origin: allow the page's own origin (same host and port as the
    request) and the ones given with --allow-origin. Other clients send none."""
    if origin in settings.allowed_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host_header) and parts.netloc == host_header


def token_ok(headers: Any, query: Any, token: str) -> bool:
    given = []
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given.append(auth[7:].strip())
    for proto in _subprotocols(headers):
        if proto.startswith(SUBPROTOCOL_KEY):
            given.append(proto[len(SUBPROTOCOL_KEY):])
    if "token" in query:
        given.append(query["token"])
    return any(hmac.compare_digest(g.encode(), token.encode()) for g in given)


def _subprotocols(headers: Any) -> list[str]:
    raw = headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


def _chosen_subprotocol(headers: Any) -> "str | None":
    """Echo ``realtime`` when offered (browser clients of Realtime offer it with their key)."""
    return "realtime" if "realtime" in _subprotocols(headers) else None
