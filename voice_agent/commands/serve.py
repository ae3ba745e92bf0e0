"""`serve`: the assistant over a WebSocket (OpenAI Realtime events + thoughts) and a page."""

from __future__ import annotations

import argparse
import gc
import json
import os
from pathlib import Path
from typing import Any

from voice_agent.commands.session_args import add_session_arguments, print_model_note, session_config

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
    scale = p.add_argument_group("scale-out on Ray Serve (pip install 'voice-agent[scale]'; "
                                 "docs/scaling.md)")
    scale.add_argument("--ray", action="store_true",
                       help="serve through Ray Serve's proxy from N replicas, each with its own models")
    scale.add_argument("--replicas", type=int, default=1, metavar="N",
                       help="replicas to start (default 1; with --max-replicas, the minimum)")
    scale.add_argument("--max-replicas", type=int, metavar="M",
                       help="autoscale between N and M replicas on active sessions")
    scale.add_argument("--replica-cpus", type=float, metavar="C",
                       help="CPUs each replica reserves on the cluster (default: --threads)")
    scale.add_argument("--ray-address", metavar="ADDR",
                       help="join this Ray cluster (HOST:PORT or ray://...) instead of starting "
                       "a local one")
    add_session_arguments(p)
    for action in p._actions:  # two shared flags mean something else here
        if action.dest == "out":
            action.help = "folder of the session folders, OUT/<session id>/ (default runs)"
        elif action.dest == "json":
            action.help = "the first stdout line is JSON: url, ws, out, pid (for scripts)"
    p.set_defaults(out=None)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from voice_agent.server import Limits, ServerSettings, create_app
    from voice_agent.server.host import ModelHost
    from voice_agent.server.runserver import bind, uvicorn_server

    settings = ServerSettings(
        host=args.host, port=args.port, token=args.token,
        allowed_origins=tuple(args.allow_origin), out=Path(args.out or "runs"),
        limits=dataclasses.replace(Limits(), max_sessions=args.max_sessions,
                                   max_session_s=args.max_session_s))
    settings.check()  # refuse an unsafe bind before loading anything
    if args.ray:
        return run_ray(args, settings)
    sock = bind(settings.host, settings.port)
    config, models = session_config(args)
    print_model_note(config, models)
    host = ModelHost(config, models)
    try:
        app = create_app(settings, host=host)
        port = sock.getsockname()[1]
        shown = f"[{settings.host}]" if ":" in settings.host else settings.host
        if args.json:
            print(json.dumps({"url": f"http://{shown}:{port}/", "ws": f"ws://{shown}:{port}/v1/realtime",
                              "out": str(settings.out), "pid": os.getpid()}), flush=True)
        else:
            print(f"serving on http://{shown}:{port}/  (WebSocket ws://{shown}:{port}/v1/realtime; "
                  f"sessions in {settings.out}/)", flush=True)
        uvicorn_server(app, settings, quiet=args.quiet).run(sockets=[sock])
    finally:
        host.close()
        # Finished sessions may sit in reference cycles; collect them now, while native
        # objects (soxr resamplers) can still be freed cleanly, not at interpreter exit.
        gc.collect()
    return 0


def run_ray(args: argparse.Namespace, settings: Any) -> int:
    """``serve --ray``: the same app from N Ray Serve replicas; runs until Ctrl-C."""
    import dataclasses
    import signal
    import threading

    from voice_agent.server.ray_serve import (
        RayServer, ScalePlan, check_models, check_port, out_dir, require_ray,
    )

    require_ray()  # the missing extra is one line, before anything else happens
    if settings.port:  # a taken port too, before models are resolved (tiny is built then)
        check_port(settings.host, settings.port)
    config, models = session_config(args)
    if args.ray_address is None:  # the replicas load from this machine: check it has them
        check_models(config, models)
    print_model_note(config, models)
    on_gpu = str(config.runtime.device).startswith("cuda")
    plan = ScalePlan(replicas=args.replicas, max_replicas=args.max_replicas,
                     cpus=args.replica_cpus or float(config.runtime.torch_threads),
                     gpus=1.0 if on_gpu else 0.0, max_sessions=args.max_sessions,
                     drain_s=min(args.max_session_s, 60.0), address=args.ray_address)
    settings = dataclasses.replace(settings, out=out_dir(settings.out))
    stop = threading.Event()
    with RayServer(settings, config, models, plan, quiet=args.quiet) as served:
        # SIGTERM (a process manager's stop) ends the sessions cleanly, as Ctrl-C does, and
        # the cluster this command started goes with it. Set after ray.init, which installs
        # its own handler (sys.exit) that would skip the sessions' ending.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        if args.json:
            print(json.dumps({"url": served.url + "/", "ws": served.ws_url, "out": str(settings.out),
                              "pid": os.getpid(), "replicas": plan.replicas}), flush=True)
        else:
            print(f"serving on {served.url}/  (WebSocket {served.ws_url}; {plan.replicas} Ray Serve "
                  f"replica(s); sessions in {settings.out}/ on each replica's machine)", flush=True)
        # Ctrl-C raises KeyboardInterrupt here: the with-block ends every session (files
        # written, close 1001) and the replicas, then the CLI prints "interrupted" (130).
        while not stop.wait(0.5):
            pass
    return 0
