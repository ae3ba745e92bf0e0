"""`serve --ray` without a cluster: the deployment's options, bad plans, and the one error
line when Ray is not installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from server_rig import REPO
from voice_agent.errors import VoiceAgentError
from voice_agent.server.ray_serve import (
    HTTP_SLACK, ScalePlan, add_replica_route, deployment_options, first_line, replica_error,
)


def test_fixed_replicas_reserve_cpus_and_cap_sessions_per_replica():
    opts = deployment_options(ScalePlan(replicas=3, cpus=2.0, max_sessions=4))
    assert opts["num_replicas"] == 3 and "autoscaling_config" not in opts
    assert opts["ray_actor_options"]["num_cpus"] == 2.0
    assert "num_gpus" not in opts["ray_actor_options"]
    assert opts["max_ongoing_requests"] == 4 + HTTP_SLACK
    assert "runtime_env" not in opts["ray_actor_options"]  # prestarted workers stay usable


def test_max_replicas_autoscales_on_active_sessions_and_gpus_are_one_per_replica():
    opts = deployment_options(ScalePlan(replicas=1, max_replicas=4, gpus=1.0, max_sessions=6))
    auto = opts["autoscaling_config"]
    assert "num_replicas" not in opts
    assert (auto["min_replicas"], auto["max_replicas"]) == (1, 4)
    assert auto["target_ongoing_requests"] == 3.0  # half of a replica's sessions
    assert opts["ray_actor_options"]["num_gpus"] == 1.0


@pytest.mark.parametrize("plan, words", [
    (ScalePlan(replicas=0), "--replicas 0"),
    (ScalePlan(replicas=3, max_replicas=2), "--max-replicas 2"),
    (ScalePlan(cpus=0), "--replica-cpus"),
])
def test_a_bad_plan_is_one_named_error(plan, words):
    with pytest.raises(VoiceAgentError, match=words):
        plan.check()


def test_a_replica_failure_is_reduced_to_its_reason():
    long = RuntimeError("Deploying application failed.\n  File \"x.py\", line 3\n"
                        "voice_agent.models.ModelError: no llm model named 'nope'\n")
    assert replica_error(long) == "voice_agent.models.ModelError: no llm model named 'nope'"
    assert first_line(ValueError("")) == "ValueError"


def test_serve_ray_without_ray_installed_is_one_error_line():
    # ray hidden from this interpreter: `import ray` raises ImportError as if not installed
    code = ("import sys; sys.modules['ray'] = None; from voice_agent.cli import main; "
            "sys.exit(main(['serve', '--ray', '--llm', 'tiny', '--port', '0']))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        "error: serve --ray needs Ray Serve, which is not installed: pip install "
        "'voice-agent[scale]' (from a checkout: pip install '.[scale]')"], r.stderr


def _run_guard(app_messages, client_leaves=False, scope_type="websocket"):
    """Drive ReplicaLossGuard around an app that sends ``app_messages`` then returns."""
    import asyncio

    from voice_agent.server.ray_proxy import ReplicaLossGuard

    sent = []

    async def app(scope, receive, send):
        if client_leaves:
            await receive()
        for m in app_messages:
            await send(m)

    async def receive():
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(m):
        sent.append(m)

    asyncio.run(ReplicaLossGuard(app)({"type": scope_type}, receive, send))
    return sent


def test_proxy_guard_closes_a_socket_its_replica_left_open_with_an_error():
    sent = _run_guard([{"type": "websocket.accept"}])
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert '"replica_lost"' in sent[1]["text"] and sent[2]["code"] == 1011


def test_proxy_guard_leaves_normal_ends_alone():
    closed = [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1000}]
    assert _run_guard(closed) == closed  # the replica closed it
    assert _run_guard([{"type": "websocket.accept"}], client_leaves=True) == [
        {"type": "websocket.accept"}]  # the client left
    assert _run_guard([{"type": "websocket.close", "code": 1008}]) == [
        {"type": "websocket.close", "code": 1008}]  # refused before accept
    http = [{"type": "http.response.start", "status": 200}]
    assert _run_guard(http, scope_type="http") == http


def test_serve_ray_on_a_taken_port_is_one_error_line_before_any_cluster_starts():
    import socket

    pytest.importorskip("ray", reason="the [scale] extra")  # without it: the test above
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "run_assistant.py", "serve", "--ray", "--llm", "tiny",
                            "--port", str(port)], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("note:")]
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}"), r.stderr


def test_replica_info_asks_for_the_token_when_the_server_has_one():
    """`GET /replica` names a process and a host: with --token it is not public."""
    from types import SimpleNamespace

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from voice_agent.server.settings import ServerSettings

    for token, headers, status in [(None, {}, 200), ("s3cret", {}, 401),
                                   ("s3cret", {"Authorization": "Bearer nope"}, 401),
                                   ("s3cret", {"Authorization": "Bearer s3cret"}, 200)]:
        app = FastAPI()
        app.state.sessions = {}
        replica = SimpleNamespace(replica="r1", settings=ServerSettings(token=token), host=None)
        add_replica_route(app, replica)
        r = TestClient(app).get("/replica", headers=headers)
        assert r.status_code == status, (token, headers, r.text)
        if status == 200:
            assert r.json()["replica"] == "r1" and r.json()["pid"] > 0
