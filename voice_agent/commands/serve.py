"""`serve`: the assistant over a WebSocket (OpenAI Realtime events + thoughts) and a page."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from voice_agent.commands.session_args import add_session_arguments, session_config
from voice_agent.errors import VoiceAgentError

NAME = "serve"
HELP = ("serve the assistant: a Realtime-compatible WebSocket at /v1/realtime and a browser "
        "page at /; one session per connection, each written to OUT/<session id>/")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other address needs --token)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any free)")
    p.add_argument("--token", help="a secret every client must send (Authorization: Bearer T, "
                   "or ?token=T in the page's URL)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                   help="a browser origin allowed besides the page's own (repeatable)")
    p.add_argument("--max-sessions", type=int, default=4, help="concurrent sessions (default 4)")
    p.add_argument("--max-session-s", type=float, default=3600.0,
                   help="seconds before a session is closed (default 3600)")
    add_session_arguments(p)
    p.set_defaults(out=None)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from voice_agent.runner import noise_note
    from voice_agent.server import Limits, ServerSettings, create_app
    from voice_agent.server.host import ModelHost

    settings = ServerSettings(
        host=args.host, port=args.port, token=args.token,
        allowed_origins=tuple(args.allow_origin), out=Path(args.out or "runs"),
        limits=dataclasses.replace(Limits(), max_sessions=args.max_sessions,
                                   max_session_s=args.max_session_s))
    settings.check()  # refuse an unsafe bind before loading anything
    sock = _bind(settings.host, settings.port)
    config, models = session_config(args)
    if note := noise_note(models.llm):
        print(note, file=sys.stderr)
    host = ModelHost(config, models)
    try:
        app = create_app(settings, host=host)
        port = sock.getsockname()[1]
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        print(f"serving on http://{shown}:{port}/  (WebSocket ws://{shown}:{port}/v1/realtime; "
              f"sessions in {settings.out}/)", flush=True)
        _serve(app, sock, settings, quiet=args.quiet)
    finally:
        host.close()
    return 0


def _bind(host: str, port: int) -> socket.socket:
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


def _serve(app, sock: socket.socket, settings, quiet: bool) -> None:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning" if quiet else "info", lifespan="on",
                            ws_max_size=settings.limits.max_frame_bytes, ws_ping_interval=20.0,
                            access_log=not quiet)
    uvicorn.Server(config).run(sockets=[sock])
