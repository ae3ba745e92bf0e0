"""Running the app with uvicorn: in the foreground (``serve``) or on a background thread
(tests and ``bench/server.py``, which talk to a real server over loopback)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from voice_agent.errors import VoiceAgentError
from voice_agent.server.settings import ServerSettings


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one clear error (address in use, no such address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise VoiceAgentError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(64)
    sock.setblocking(False)
    return sock


def uvicorn_server(app: Any, settings: ServerSettings, quiet: bool = True) -> Any:
    import uvicorn

    # ws_max_size: a bigger frame is refused by the protocol layer with close code 1009.
    config = uvicorn.Config(app, log_level="warning" if quiet else "info", lifespan="on",
                            ws_max_size=settings.limits.max_frame_bytes, ws_ping_interval=20.0,
                            access_log=not quiet)
    return uvicorn.Server(config)


class ServerThread:
    """A server on a background thread with its own event loop, on a free loopback port.

    Use as a context manager; ``port`` is set once it listens.
    """

    def __init__(self, app: Any, settings: ServerSettings, host: str = "127.0.0.1") -> None:
        self.sock = bind(host, 0)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn_server(app, settings)
        self._thread = threading.Thread(target=self._run, name="server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread ended before it started")
            self._thread.join(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self.sock.close()
