"""`serve --ray` without a cluster: the deployment's options, bad plans, and the one error
line when Ray is not installed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from server_rig import REPO
from voice_agent.errors import VoiceAgentError
from voice_agent.server.ray_serve import (
    HTTP_SLACK, ScalePlan, deployment_options, first_line, replica_error,
)


def test_fixed_replicas_reserve_cpus_and_cap_sessions_per_replica():
    opts = deployment_options(ScalePlan(replicas=3, cpus=2.0, max_sessions=4))
    assert opts["num_replicas"] == 3 and "autoscaling_config" not in opts
    assert opts["ray_actor_options"]["num_cpus"] == 2.0
    assert "num_gpus" not in opts["ray_actor_options"]
    assert opts["max_ongoing_requests"] == 4 + HTTP_SLACK
    assert opts["ray_actor_options"]["runtime_env"]["env_vars"]["MALLOC_ARENA_MAX"] == "2"


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
