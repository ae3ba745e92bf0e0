"""The server end to end over loopback, with real whisper, piper and the tiny LLM: audio
streamed in real time by a Python WebSocket client and by the official ``openai`` SDK's
realtime client, concurrent sessions, and a barge-in with truncation."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from server_rig import REPO, SAMPLES, server, tiny_host, ws_url
from voice_agent.server.client import RealtimeClient, wav_pcm16

pytestmark = pytest.mark.heavy
RATE = 24_000


@pytest.fixture(scope="module")
def host():
    h = tiny_host(max_answer=24)
    yield h
    h.close()


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def one_turn(url: str, wav: str, **client) -> RealtimeClient:
    async with RealtimeClient(url, **client) as c:
        await c.wait_for("session.created", 10)
        await c.stream(wav_pcm16(SAMPLES / wav, RATE, tail_s=2.0), RATE)
        await c.wait_for("response.done", 60)
        return c


def check_full_turn(c: RealtimeClient, out: Path) -> None:
    """One spoken turn gave every kind of event, in order, and the session's folder."""
    deltas = "".join(e["delta"] for e in c.of("conversation.item.input_audio_transcription.delta"))
    final = c.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
    # "capital", not "France": whisper base sometimes hears the soft ending as "friends"
    # (a known ASR limit, not the protocol's business)
    assert "capital" in final.lower() and "capital" in deltas.lower()
    assert c.of("input_audio_buffer.speech_started") and c.of("input_audio_buffer.speech_stopped")
    assert len(c.of("voice_agent.thought.delta")) > 5
    assert c.of("voice_agent.engine.state") and c.of("response.output_audio_transcript.delta")
    assert len(c.audio) > 2 * RATE * 0.5  # at least half a second of answer audio
    order = [c.first_t(k) for k in ("session.created", "input_audio_buffer.speech_started",
                                    "response.output_audio.delta", "response.done")]
    assert order == sorted(order)
    done = c.of("response.done")[0]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["transcript"]
    ids = {e.get("response_id") for _, e in c.events if e.get("response_id")}
    assert ids == {done["id"]}
    # the session's folder is written as replay writes it
    folder = out / c.of("session.created")[0]["session"]["id"]
    for name in ("trace.jsonl", "out.wav", "metrics.json", "summary.md", "timeline.png"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["turns"][0]["response_latency"] is not None


def test_two_concurrent_sessions_each_get_a_full_turn_and_never_mix_events(host, tmp_path):
    async def main():
        with server(host, tmp_path) as s:
            return await asyncio.gather(one_turn(ws_url(s), "capital_of_france.wav"),
                                        one_turn(ws_url(s), "seven_times_eight.wav"))

    a, b = run(main(), 120)
    check_full_turn(a, tmp_path)
    heard = [c.of("conversation.item.input_audio_transcription.completed")[0]["transcript"].lower()
             for c in (a, b)]
    # each session heard its own question ("capital", not "France": as in check_full_turn,
    # whisper base sometimes hears the soft ending as "friends", more so when two sessions
    # share the CPU; a fresh clone's make test met it here once)
    assert "capital" in heard[0] and "capital" not in heard[1]
    assert "eight" in heard[1] or "8" in heard[1]
    tags = []
    for c in (a, b):
        sid = c.of("session.created")[0]["session"]["id"]
        tag = sid[-8:]
        ids = {e.get(k) for _, e in c.events for k in ("item_id", "response_id") if e.get(k)}
        assert ids and all(tag in i for i in ids), (tag, ids)
        trace = [json.loads(line) for line in (tmp_path / sid / "trace.jsonl").read_text().splitlines()]
        users = [r["user"] for r in trace if r["ev"] == "turn.end"]
        assert users and all(u.lower() in heard[len(tags)] for u in users)
        tags.append(tag)
    assert tags[0] != tags[1]


def test_barge_in_then_truncate(host, tmp_path):
    async def main():
        with server(host, tmp_path) as s:
            async with RealtimeClient(ws_url(s)) as c:
                await c.wait_for("session.created", 10)
                await c.send({"type": "session.update", "session": {"voice_agent": {"headphones": True}}})
                silence = bytes(2 * int(RATE * 0.04))
                # The tiny model's answer is noise; now and then it has nothing speakable
                # (the turn ends without audio): then ask again, at most three times.
                for question in ("seven_times_eight.wav", "capital_of_france.wav", "train_arrival.wav"):
                    turns = len(c.of("response.done"))
                    await c.stream(wav_pcm16(SAMPLES / question, RATE, tail_s=0.2), RATE)
                    while not c.of("response.output_audio.delta") and len(c.of("response.done")) == turns:
                        await c.stream(silence, RATE)  # a microphone keeps sending
                        assert not c.closed.is_set()
                    if c.of("response.output_audio.delta"):
                        break
                assert c.of("response.output_audio.delta"), "three answers without audio"
                heard_before = len(c.audio)
                await c.stream(wav_pcm16(SAMPLES / "boiling_point.wav", RATE, tail_s=0.0), RATE)
                barge = await c.wait_for("voice_agent.barge_in", 20)
                played_ms = int(len(c.audio) / 2 / RATE * 1000)
                await c.send({"type": "conversation.item.truncate", "item_id": barge["item_id"],
                              "content_index": 0, "audio_end_ms": played_ms})
                truncated = await c.wait_for("conversation.item.truncated", 10)
                async def keep_sending_silence() -> None:
                    while True:  # a microphone keeps sending until the answer is done
                        await c.stream(silence, RATE)

                stream = asyncio.create_task(keep_sending_silence())
                done = await c.wait_for("response.done", 60, count=turns + 1)
                stream.cancel()
                return c, barge, truncated, done, heard_before

    c, barge, truncated, done, heard_before = run(main(), 120)
    assert heard_before > 0 and truncated["item_id"] == barge["item_id"]
    assert truncated["audio_end_ms"] >= 0
    assert done["response"]["status"] == "cancelled"  # the turn was interrupted
    # after the barge-in, the user's new words reached the model in the same turn
    listens = " ".join(e["text"] for e in c.of("voice_agent.listen")).lower()
    assert "water" in listens or "boil" in listens


def test_openai_sdk_realtime_client_completes_a_spoken_turn(host, tmp_path):
    from openai import AsyncOpenAI

    async def main():
        with server(host, tmp_path, token="sdk-token") as s:
            client = AsyncOpenAI(api_key="sdk-token", websocket_base_url=f"ws://127.0.0.1:{s.port}/v1")
            kinds: list[str] = []
            transcript = answer = ""
            async with client.realtime.connect(model="voice-agent") as conn:
                await conn.session.update(session={
                    "type": "realtime",
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE}},
                              "output": {"format": {"type": "audio/pcm", "rate": RATE}}}})
                pcm = wav_pcm16(SAMPLES / "capital_of_france.wav", RATE, tail_s=2.0)

                async def speak() -> None:  # paced like a microphone
                    step, start = int(RATE * 0.04) * 2, loop.time()
                    for i in range(0, len(pcm), step):
                        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + step]).decode())
                        await asyncio.sleep(max(0.0, start + (i + step) / 2 / RATE - loop.time()))

                loop = asyncio.get_running_loop()

                speaker = asyncio.create_task(speak())
                audio_bytes = 0
                async for event in conn:
                    kinds.append(event.type)
                    if event.type == "conversation.item.input_audio_transcription.completed":
                        transcript = event.transcript
                    elif event.type == "response.output_audio.delta":
                        audio_bytes += len(base64.b64decode(event.delta))
                    elif event.type == "response.output_audio_transcript.delta":
                        answer += event.delta
                    elif event.type == "response.done":
                        break
                await speaker
            return kinds, transcript, answer, audio_bytes, event

    kinds, transcript, answer, audio_bytes, done = run(main(), 120)
    assert kinds[0] == "session.created" and "session.updated" in kinds
    assert "capital" in transcript.lower() and answer and audio_bytes > 0
    assert done.response.status == "completed"


def test_serve_command_ctrl_c_mid_answer_keeps_the_whole_session(tmp_path):
    """`serve` as a user runs it: Ctrl-C while an answer plays closes the client's socket,
    writes the session's files (the trace to its last line) and exits 130, no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "run_assistant.py", "serve", "--llm", "tiny", "--port", "0", "--json",
         "--quiet", "--out", str(tmp_path), "--set", "engine.max_answer=24"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        started = json.loads(proc.stdout.readline())

        async def talk() -> RealtimeClient:
            async with RealtimeClient(started["ws"]) as c:
                await c.wait_for("session.created", 30)
                await c.stream(wav_pcm16(SAMPLES / "capital_of_france.wav", RATE, tail_s=1.0), RATE)
                await c.wait_for("response.output_audio.delta", 60)
                proc.send_signal(signal.SIGINT)
                await asyncio.wait_for(c.closed.wait(), 30)
                return c

        c = run(talk())
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert c.close_code in (1000, 1001, 1012)
    folder = tmp_path / c.of("session.created")[0]["session"]["id"]
    for name in ("trace.jsonl", "out.wav", "metrics.json", "summary.md", "timeline.png"):
        assert (folder / name).is_file(), name
    lines = (folder / "trace.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["ev"] == "trace.end"  # closed in order, nothing cut off
    assert any(json.loads(line)["ev"] == "audio.play_start" for line in lines)
