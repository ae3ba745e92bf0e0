"""`serve --ray` end to end: a local Ray cluster, two replicas of the server (tiny LLM, real
whisper and piper), two concurrent spoken sessions through Serve's proxy with a real
WebSocket client. Both complete, each on its own replica; killing one replica ends only
the session it held; stopping the command ends the other session with its files whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from server_rig import REPO, SAMPLES
from voice_agent.server.client import RealtimeClient, wav_pcm16

pytestmark = pytest.mark.heavy
RATE = 24_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`serve --ray --replicas 2` as a user runs it; SIGTERM (then the process group) after."""
    try:
        import ray  # noqa: F401
    except ImportError:  # make install-test installs the extra: missing is a bug, not a skip
        pytest.fail("ray is not installed although `make install-test` installs the [scale] extra")
    out = tmp_path_factory.mktemp("ray_runs")
    proc = subprocess.Popen(
        [sys.executable, "run_assistant.py", "serve", "--ray", "--replicas", "2", "--llm", "tiny",
         "--port", "0", "--json", "--quiet", "--out", str(out), "--max-sessions", "1",
         "--set", "engine.max_answer=16", "--set", "engine.max_thoughts=96"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # the cluster's processes are ours to end with it
        env={**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        # --json's line is the first line of ours; Ray's log monitor may print before it
        line = proc.stdout.readline()
        while line and not line.startswith("{"):
            line = proc.stdout.readline()
        if not line:
            pytest.fail(f"serve --ray did not start: {proc.stderr.read()[-3000:]}")
        yield json.loads(line), out, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any cluster process left behind


def replica_pids(url: str, want: int, tries: int = 40) -> dict[str, int]:
    """replica id -> pid, from `GET /replica` (the proxy spreads the calls)."""
    seen: dict[str, int] = {}
    for _ in range(tries):
        with urllib.request.urlopen(url + "replica", timeout=10) as r:
            info = json.loads(r.read())
        seen[info["replica"]] = info["pid"]
        if len(seen) >= want:
            break
    return seen


def test_two_sessions_land_on_two_replicas_and_a_dead_replica_ends_only_its_session(served):
    started, out, proc = served
    assert started["replicas"] == 2

    async def main():
        async def open_session() -> RealtimeClient:
            # Serve's proxy picks a replica from a load report that may lag: a second
            # WebSocket can reach the replica that is already full (--max-sessions 1), which
            # closes it 1013 "try again later". A client does what the code says: retries.
            for attempt in range(4):
                c = RealtimeClient(started["ws"])
                await c.__aenter__()
                try:
                    await c.wait_for("session.created", 20)
                    return c
                except ConnectionError:
                    await c.__aexit__(None, None, None)
                    if c.close_code != 1013 or attempt == 3:
                        raise
                await asyncio.sleep(1.0)

        async def ask(c: RealtimeClient, wav: str) -> RealtimeClient:
            await c.stream(wav_pcm16(SAMPLES / wav, RATE, tail_s=1.5), RATE)
            await c.wait_for("response.done", 60)
            return c

        first = await open_session()
        second = await open_session()  # both open at once: one per replica
        a, b = await asyncio.gather(ask(first, "capital_of_france.wav"),
                                    ask(second, "seven_times_eight.wav"))
        try:
            # Both sessions are still open: kill the replica holding b's.
            pids = replica_pids(started["url"], 2)
            b_replica = b.of("session.created")[0]["session"]["voice_agent"]["replica"]
            os.kill(pids[b_replica], signal.SIGKILL)
            await asyncio.wait_for(b.closed.wait(), 20)
            await asyncio.sleep(1.0)
            assert not a.closed.is_set()  # the other replica's session goes on
            await a.stream(bytes(2 * int(RATE * 0.5)), RATE)  # a microphone keeps sending
            assert not a.closed.is_set()
            # The command stopped by a process manager: a's session ends cleanly.
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(a.closed.wait(), 40)
        finally:
            await a.__aexit__(None, None, None)
            await b.__aexit__(None, None, None)
        return a, b, pids

    a, b, pids = asyncio.run(asyncio.wait_for(main(), 150))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
    assert a.close_code == 1001  # going away: the server ended the session, not a crash
    replicas = [c.of("session.created")[0]["session"]["voice_agent"]["replica"] for c in (a, b)]
    assert replicas[0] != replicas[1] and set(replicas) <= set(pids), (replicas, pids)
    for c in (a, b):
        done = c.of("response.done")[0]["response"]
        assert done["status"] == "completed"
        assert c.of("conversation.item.input_audio_transcription.completed")
    # b's replica died: the proxy's guard (ray_proxy.py) said so, then closed with 1011
    assert b.close_code == 1011, b.close_code
    assert b.of("error")[-1]["error"]["code"] == "replica_lost"
    # a's session folder was written by its replica, and the trace says which one
    a_id = a.of("session.created")[0]["session"]["id"]
    lines = (out / a_id / "trace.jsonl").read_text().splitlines()
    assert json.dumps(replicas[0]) in lines[0]  # the header names the replica
    assert json.loads(lines[-1])["ev"] == "trace.end"  # closed in order, nothing cut off
    for name in ("out.wav", "metrics.json", "summary.md"):
        assert (out / a_id / name).is_file(), name
