"""Scale-out on Ray Serve: N replicas of the session server behind Serve's HTTP proxy.

Each replica is a Ray actor process with its own ``ModelHost`` (LLM weights, whisper,
piper, the model worker thread) and runs ``create_app``'s FastAPI app as the deployment's
ASGI ingress, so a replica serves exactly what ``serve`` serves on one machine. Serve's
proxy holds the public port. A WebSocket is one long request to Serve: the proxy picks a
replica when the socket opens (power of two choices on ongoing requests, i.e. the less
busy of two) and every frame of that socket then goes to the same replica. Session
affinity comes with the connection; nothing sticky is needed.

Ray is an optional dependency (``pip install 'voice-agent[scale]'``); nothing here imports
it at module level, so the rest of the package never needs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voice_agent.config import Config
from voice_agent.errors import VoiceAgentError
from voice_agent.runner import Models
from voice_agent.server.ray_proxy import CALLBACK_PATH
from voice_agent.server.settings import ServerSettings

logger = logging.getLogger(__name__)

APP_NAME = "voice_agent"
DEPLOYMENT_NAME = "VoiceAgentServer"
# Page loads and /health probes are requests too; a replica takes this many besides its
# sessions, so a full replica still answers them (and refuses a session with server_busy).
HTTP_SLACK = 4
PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
INSTALL_HINT = "pip install 'voice-agent[scale]' (from a checkout: pip install '.[scale]')"


class ScaleError(VoiceAgentError):
    """Ray missing, a cluster that cannot be reached, or replicas that did not start."""


@dataclass(frozen=True)
class ScalePlan:
    """How many replicas and what each one reserves on the Ray cluster.

    replicas: replicas to start (the floor when autoscaling).
    max_replicas: autoscale between ``replicas`` and this on active sessions (None: fixed).
    cpus: logical CPUs a replica reserves (its torch threads; Ray places replicas by them).
    gpus: GPUs a replica reserves (1 with ``--device cuda``: one replica per GPU).
    max_sessions: sessions one replica takes (its ``--max-sessions``).
    drain_s: how long a stopping replica waits for its sessions before it is killed.
    address: an existing cluster (``ray://`` or ``HOST:PORT``); None starts a local one.
    """

    replicas: int = 1
    max_replicas: int | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    max_sessions: int = 4
    drain_s: float = 30.0
    address: str | None = None

    def check(self) -> None:
        if self.replicas < 1:
            raise ScaleError(f"--replicas {self.replicas}: at least 1")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ScaleError(f"--max-replicas {self.max_replicas} is below --replicas {self.replicas}")
        if self.cpus <= 0:
            raise ScaleError(f"--replica-cpus {self.cpus}: must be above 0")
        if self.max_sessions < 1:
            raise ScaleError(f"--max-sessions {self.max_sessions}: at least 1")


def deployment_options(plan: ScalePlan) -> dict[str, Any]:
    """The options of the Serve deployment (``serve.deployment(**options)``)."""
    # No runtime_env here: a replica with one needs a fresh worker process (Ray keys
    # workers by it) instead of one the cluster already started, seconds more per replica.
    actor: dict[str, Any] = {"num_cpus": plan.cpus}
    if plan.gpus:
        actor["num_gpus"] = plan.gpus
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": actor,
        # Each session is one ongoing request for its whole length: this caps the sessions
        # the proxy sends to a replica; the app's own max_sessions check answers the rest.
        "max_ongoing_requests": plan.max_sessions + HTTP_SLACK,
        "graceful_shutdown_timeout_s": plan.drain_s,
        # Loading the models takes tens of seconds on a busy CPU; a health check must not
        # count that against the replica.
        "health_check_timeout_s": 60.0,
    }
    if plan.max_replicas is not None and plan.max_replicas > plan.replicas:
        options["autoscaling_config"] = {
            "min_replicas": plan.replicas, "max_replicas": plan.max_replicas,
            # Scale out at half-full replicas: a new one needs its model load time before
            # it takes sessions, and a full one refuses them.
            "target_ongoing_requests": max(1.0, plan.max_sessions / 2),
            "upscale_delay_s": 10.0, "downscale_delay_s": 300.0,
        }
    else:
        options["num_replicas"] = plan.replicas
    return options


def require_ray() -> tuple[Any, Any]:
    """``(ray, ray.serve)``, or one clear error when the [scale] extra is not installed."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ScaleError(f"serve --ray needs Ray Serve, which is not installed: {INSTALL_HINT}") from None
    return ray, serve


class StopSignal:
    """A flag the command raises before it takes the replicas down (a Ray actor).

    Serve stops a replica only after its ongoing requests end, and a voice session is one
    request that lasts until the user leaves: without this the replicas would wait out
    ``drain_s`` and then be killed mid-session, traces cut short. Each replica waits on
    the flag and ends its own sessions the way ``serve`` does on Ctrl-C (files written,
    close 1001), so the drain finishes at once.
    """

    def __init__(self) -> None:
        self._raised = asyncio.Event()
        self._done: set[str] = set()

    def raise_(self) -> None:
        self._raised.set()

    async def wait(self) -> None:
        await self._raised.wait()

    def done(self, replica: str) -> None:
        """A replica's sessions have all ended."""
        self._done.add(replica)

    def replicas_done(self) -> int:
        return len(self._done)


CLOSE_GOING_AWAY = 1001  # RFC 6455: the server is going down


class ReplicaServer:
    """One replica: loads its own models, then serves ``create_app``'s app.

    Built by Ray on the replica's process (``serve.ingress()`` without an app calls
    ``__serve_build_asgi_app__`` after the constructor).
    """

    def __init__(self, settings: ServerSettings, config: Config, models: Models,
                 stop: Any = None) -> None:
        from ray import serve

        from voice_agent.memory import fix_malloc_thresholds, limit_malloc_arenas

        # As the CLI does (memory.py); here Ray's threads exist already, so this caps the
        # arenas our sessions' threads create rather than all of them.
        limit_malloc_arenas()
        fix_malloc_thresholds()
        self.replica = serve.get_replica_context().replica_tag
        self.settings = dataclasses.replace(settings, replica=self.replica)
        self.config, self.models, self.stop = config, models, stop
        self.host: Any = None
        self.served: Any = None  # the FastAPI app (`app` is the Serve wrapper's)
        self._watch: asyncio.Task | None = None

    async def __serve_build_asgi_app__(self) -> Any:
        from voice_agent.server.app import create_app
        from voice_agent.server.host import ModelHost

        if self.stop is not None:  # watched from now: a replica still loading has no session
            self._watch = asyncio.get_running_loop().create_task(self._end_sessions_on_stop())
        t0 = time.perf_counter()
        # Off the replica's event loop: Serve keeps answering the controller meanwhile.
        self.host = await asyncio.to_thread(ModelHost, self.config, self.models)
        logger.info("replica %s: models loaded in %.1f s", self.replica, time.perf_counter() - t0)
        self.served = create_app(self.settings, host=self.host)
        add_replica_route(self.served, self)
        return self.served

    async def _end_sessions_on_stop(self) -> None:
        try:
            await self.stop.wait.remote()
        except Exception as e:  # noqa: BLE001 - the command died: its cluster goes with it
            logger.info("replica %s: stop signal lost (%s)", self.replica, first_line(e))
            return
        sessions = self.served.state.sessions if self.served is not None else {}
        while sessions:  # each writes its trace and report, then leaves the dict
            # again each round: the proxy may still hand this replica a session meanwhile
            for conn in list(sessions.values()):
                if not conn.stop.is_set():  # one already ending keeps its own close code
                    conn.end(CLOSE_GOING_AWAY, "server shutting down")
            await asyncio.sleep(0.1)
        await self.stop.done.remote(self.replica)

    def __del__(self) -> None:
        if getattr(self, "host", None) is not None:
            self.host.close()


def add_replica_route(app: Any, replica: ReplicaServer) -> None:
    """``GET /replica``: which replica answered, its process and memory (ops, the bench).
    It names a process and a host, so with ``--token`` it asks for the token too."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    from voice_agent.server.app import token_ok

    async def replica_info(request: Request) -> Any:
        token = replica.settings.token
        if token and not token_ok(request.headers, request.query_params, token):
            return JSONResponse({"error": "missing or wrong token"}, status_code=401)
        return JSONResponse({"replica": replica.replica, "pid": os.getpid(),
                             "node": socket.gethostname(), "rss_mb": round(rss_mb(), 1),
                             "sessions": len(app.state.sessions),
                             "load_s": round(getattr(replica.host, "load_s", 0.0), 2)})

    # the class itself, not the postponed string: FastAPI cannot see this function's imports
    replica_info.__annotations__["request"] = Request
    app.get("/replica")(replica_info)


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def check_models(config: Config, models: Models) -> None:
    """Resolve the three models here, as each replica will (one clear ``ModelError`` line
    now instead of replicas failing one after another). Only meaningful where the replicas
    run on this machine: a local cluster."""
    from voice_agent.models import resolve_model

    resolve_model("llm", models.llm, device=config.runtime.device)
    resolve_model("asr", models.asr or config.asr.model)
    resolve_model("tts", models.tts or config.tts.voice)


def free_port(host: str) -> int:
    """A port that is free now: Serve's proxy needs a number, not 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(host: str, port: int) -> None:
    """One clear line when the proxy's address is taken, before a cluster starts."""
    from voice_agent.server.runserver import bind

    bind(host, port).close()


class RayServer:
    """The deployed app on a Ray cluster; a context manager.

    Starts a local cluster (or joins ``plan.address``), starts Serve's proxy on
    ``settings.host:settings.port`` (0: a free port), deploys ``plan.replicas`` replicas
    and waits until every one has loaded its models. On exit the app is deleted, and a
    cluster this object started is shut down.
    """

    def __init__(self, settings: ServerSettings, config: Config, models: Models,
                 plan: ScalePlan, quiet: bool = True) -> None:
        plan.check()
        settings.check()
        self.settings, self.config, self.models, self.plan, self.quiet = (
            settings, config, models, plan, quiet)
        self.port = settings.port
        self._started_cluster = False
        self._ray: Any = None
        self._serve: Any = None
        self._stop: Any = None
        self._deployed = False

    @property
    def url(self) -> str:
        host = self.settings.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/v1/realtime"

    def __enter__(self) -> "RayServer":
        ray, serve = self._ray, self._serve = require_ray()
        if self.port == 0:
            self.port = free_port(self.settings.host)
        check_port(self.settings.host, self.port)
        self._connect(ray)
        try:
            self._deploy(serve)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _connect(self, ray: Any) -> None:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": not self.quiet,
                                  "logging_level": logging.WARNING if self.quiet else logging.INFO}
        if self.plan.address is None:
            # The cluster's processes inherit this environment: the proxy then ends a dead
            # replica's sockets with an error event (ray_proxy.py). A user's own callback wins.
            os.environ.setdefault(PROXY_CALLBACK_ENV, CALLBACK_PATH)
            # A local cluster sized for the replicas asked for: Ray places actors by these
            # logical CPUs, so more than the machine has is allowed (they share the cores).
            need = (self.plan.max_replicas or self.plan.replicas) * self.plan.cpus
            kwargs["num_cpus"] = max(1, int(need + 0.999))
            if self.plan.gpus:
                kwargs["num_gpus"] = int((self.plan.max_replicas or self.plan.replicas) * self.plan.gpus + 0.999)
        else:
            kwargs["address"] = self.plan.address
        try:
            ray.init(**kwargs)
        except Exception as e:  # noqa: BLE001 - Ray raises many kinds (ConnectionError, RuntimeError...)
            where = f"the Ray cluster at {self.plan.address}" if self.plan.address else "a local Ray cluster"
            raise ScaleError(f"cannot start or reach {where}: {first_line(e)}") from None
        self._started_cluster = self.plan.address is None

    def _deploy(self, serve: Any) -> None:
        serve.start(http_options={"host": self.settings.host, "port": self.port})
        # Owned by this process (not detached): if the command dies, the flag goes too.
        self._stop = self._ray.remote(num_cpus=0)(StopSignal).remote()
        deployment = serve.deployment(**deployment_options(self.plan))(serve.ingress()(ReplicaServer))
        app = deployment.bind(self.settings, self.config, self.models, self._stop)
        try:
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        except Exception as e:  # noqa: BLE001 - a replica's failed constructor comes back as RuntimeError
            raise ScaleError(f"the replicas did not start: {replica_error(e, deploy_status(serve))}") from None
        self._deployed = True

    def end_sessions(self, timeout_s: float = 30.0) -> None:
        """Every replica ends its sessions (files written, close 1001); returns once each
        replica says so, or after ``timeout_s``."""
        replicas = len(self.replica_actors())
        self._ray.get(self._stop.raise_.remote(), timeout=10)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._ray.get(self._stop.replicas_done.remote(), timeout=10) >= replicas:
                return
            time.sleep(0.2)
        logger.warning("replicas still ending their sessions after %.0f s", timeout_s)

    def replica_actors(self) -> list[str]:
        """The Ray actor names of the running replicas (to find or kill one)."""
        from ray.util import list_named_actors

        return sorted(a["name"] for a in list_named_actors(all_namespaces=True)
                      if DEPLOYMENT_NAME in a["name"] and a.get("namespace") == "serve")

    def __exit__(self, *exc: object) -> None:
        ray, serve = self._ray, self._serve
        if ray is None or not ray.is_initialized():
            return
        try:
            if self._deployed:
                self.end_sessions()
            # A cluster this object started goes down with ray.shutdown() below, replicas
            # included (their sessions have ended); serve.shutdown() first would only
            # wait on Serve's controller and log its killed tasks.
            if not self._started_cluster:
                serve.delete(APP_NAME)  # leave someone else's cluster (and its Serve) running
        except Exception as e:  # noqa: BLE001 - shutting down must not hide the real error
            logger.warning("Serve shutdown: %s", first_line(e))
        finally:
            ray.shutdown()


def first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def deploy_status(serve: Any) -> str:
    """What Serve says about the deployment: a failed replica's traceback is here, while
    ``serve.run``'s exception only says that the deployment failed."""
    try:
        app = serve.status().applications[APP_NAME]
        return "\n".join(d.message for d in app.deployments.values() if d.message)
    except Exception:  # noqa: BLE001 - best effort: the caller still has the exception
        return ""


def replica_error(e: BaseException, status: str = "") -> str:
    """The line of a deploy failure that says why: Serve wraps a replica's exception in a
    long report (the last ``SomeError: ...`` line is the cause; for our own errors,
    ``VoiceAgentError`` subclasses, that is their one line)."""
    for text in (status, str(e)):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        for ln in reversed(lines):
            if "Error: " in ln and not ln.startswith(("File ", "ray.exceptions.")):
                return ln[:300]
    return first_line(e)


def out_dir(out: Path) -> Path:
    """Session folders by absolute path: a replica's working directory is Ray's, not ours."""
    return out.expanduser().resolve()
