"""The bad-input table of the server, one row per test, against a real server on loopback:
each bad client gets an ``error`` event or a close code, never a crash, and the server
goes on serving others."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import sys

import pytest
import websockets

from server_rig import REPO, server, tiny_host, ws_url
from voice_agent.server.client import RealtimeClient

QUIET = {"write_report": False}


@pytest.fixture(scope="module")
def host():
    h = tiny_host()
    yield h
    h.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def still_serves(url: str) -> None:
    """A fresh client gets its session and an answer to session.update."""
    async with RealtimeClient(url) as c:
        await c.wait_for("session.created", 10)
        await c.send({"type": "session.update", "session": {"instructions": "Be brief."}})
        updated = await c.wait_for("session.updated", 10)
        assert updated["session"]["instructions"] == "Be brief."


@pytest.mark.parametrize("message, code", [
    ("{this is not json", "invalid_json"),
    ('{"type": "conversation.frobnicate", "event_id": "e1"}', "unknown_event"),
    ('{"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcmu"}}}}}',
     "unsupported_audio_format"),
    ('{"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 11025}}}}}',
     "unsupported_audio_format"),
    ('{"type": "input_audio_buffer.append", "audio": "AAEC"}', "invalid_audio_format"),  # 3 bytes
    ('{"type": "input_audio_buffer.append", "audio": "%%%"}', "invalid_audio"),
])
def test_bad_message_gets_an_error_event_and_the_session_goes_on(host, tmp_path, message, code):
    async def main():
        with server(host, tmp_path, **QUIET) as s:
            async with RealtimeClient(ws_url(s)) as c:
                await c.wait_for("session.created", 10)
                await c.send(message)
                err = await c.wait_for("error", 10)
                assert err["error"]["code"] == code, err
                await c.send({"type": "session.update", "session": {"instructions": "Hi."}})
                await c.wait_for("session.updated", 10)  # the same session still answers
                assert not c.closed.is_set()
    run(main())


def test_odd_binary_audio_frame_gets_an_error(host, tmp_path):
    async def main():
        with server(host, tmp_path, **QUIET) as s:
            async with RealtimeClient(ws_url(s)) as c:
                await c.wait_for("session.created", 10)
                await c.send(b"\x00\x01\x02")
                assert (await c.wait_for("error", 10))["error"]["code"] == "invalid_audio_format"
                await c.send(b"\x00\x00" * 480)  # a good binary frame is taken silently
                await c.send({"type": "input_audio_buffer.clear"})
                await c.wait_for("input_audio_buffer.cleared", 10)
    run(main())


def test_oversized_frame_closes_1009_and_others_keep_working(host, tmp_path):
    async def main():
        with server(host, tmp_path, limits={"max_frame_bytes": 64_000}, **QUIET) as s:
            async with RealtimeClient(ws_url(s)) as c:
                await c.wait_for("session.created", 10)
                await c.send({"type": "input_audio_buffer.append",
                              "audio": base64.b64encode(bytes(96_000)).decode()})
                await asyncio.wait_for(c.closed.wait(), 10)
                assert c.close_code == 1009
            await still_serves(ws_url(s))
    run(main())


def test_message_flood_closes_1008_and_others_keep_working(host, tmp_path):
    async def main():
        with server(host, tmp_path, limits={"max_messages_per_s": 50, "burst_messages": 20},
                    **QUIET) as s:
            async with RealtimeClient(ws_url(s)) as bystander:
                await bystander.wait_for("session.created", 10)
                async with RealtimeClient(ws_url(s)) as c:
                    await c.wait_for("session.created", 10)
                    with contextlib.suppress(websockets.ConnectionClosed):
                        for _ in range(500):
                            await c.send({"type": "input_audio_buffer.clear"})
                            await asyncio.sleep(0)
                    await asyncio.wait_for(c.closed.wait(), 10)
                    assert c.close_code == 1008
                    assert c.of("error")[-1]["error"]["code"] == "rate_limit_exceeded"
                await bystander.send({"type": "session.update", "session": {}})
                await bystander.wait_for("session.updated", 10)
    run(main())


def test_audio_far_ahead_of_real_time_closes_1008(host, tmp_path):
    async def main():
        with server(host, tmp_path, limits={"max_audio_ahead_s": 2.0}, **QUIET) as s:
            async with RealtimeClient(ws_url(s)) as c:
                await c.wait_for("session.created", 10)
                with contextlib.suppress(websockets.ConnectionClosed):
                    for _ in range(20):  # 1 s of silence per message, all at once
                        await c.send(bytes(2 * 24_000))
                        await asyncio.sleep(0.01)
                await asyncio.wait_for(c.closed.wait(), 10)
                assert c.close_code == 1008
                assert c.of("error")[-1]["error"]["code"] == "audio_too_fast"
    run(main())


def test_session_length_limit_ends_the_session_with_its_files(host, tmp_path):
    async def main():
        with server(host, tmp_path, limits={"max_session_s": 1.0}) as s:
            async with RealtimeClient(ws_url(s)) as c:
                created = await c.wait_for("session.created", 10)
                await c.stream(bytes(2 * 24_000), 24_000)  # one second of silence, in real time
                await asyncio.wait_for(c.closed.wait(), 20)
                assert c.close_code == 1000
                assert c.of("error")[-1]["error"]["code"] == "session_expired"
                closed = c.of("voice_agent.session.closed")
                assert closed and closed[0]["session_id"] == created["session"]["id"]
        folder = tmp_path / created["session"]["id"]
        assert (folder / "trace.jsonl").is_file() and (folder / "metrics.json").is_file()
    run(main())


def test_concurrent_session_limit_refuses_with_1013(host, tmp_path):
    async def main():
        with server(host, tmp_path, limits={"max_sessions": 1}, **QUIET) as s:
            async with RealtimeClient(ws_url(s)) as first:
                await first.wait_for("session.created", 10)
                async with RealtimeClient(ws_url(s)) as second:
                    await asyncio.wait_for(second.closed.wait(), 10)
                    assert second.close_code == 1013
                    assert second.of("error")[0]["error"]["code"] == "server_busy"
                await first.send({"type": "session.update", "session": {}})
                await first.wait_for("session.updated", 10)
            await asyncio.sleep(0.5)  # the first session's close is handled
            await still_serves(ws_url(s))
    run(main())


def test_foreign_origin_is_refused_and_own_origin_accepted(host, tmp_path):
    async def main():
        with server(host, tmp_path, **QUIET) as s:
            with pytest.raises(websockets.InvalidStatus) as e:
                async with RealtimeClient(ws_url(s), origin="http://evil.example"):
                    pass
            assert e.value.response.status_code == 403
            async with RealtimeClient(ws_url(s), origin=f"http://127.0.0.1:{s.port}") as c:
                await c.wait_for("session.created", 10)
    run(main())


def test_token_is_required_when_set(host, tmp_path):
    async def main():
        with server(host, tmp_path, token="s3cret", **QUIET) as s:
            for bad in (None, "wrong"):
                with pytest.raises(websockets.InvalidStatus) as e:
                    async with RealtimeClient(ws_url(s), token=bad):
                        pass
                assert e.value.response.status_code == 403
            async with RealtimeClient(ws_url(s), token="s3cret") as c:
                await c.wait_for("session.created", 10)
            async with RealtimeClient(ws_url(s, "?token=s3cret")) as c:
                await c.wait_for("session.created", 10)
    run(main())


def test_serve_refuses_a_public_host_without_token():
    proc = subprocess.run([sys.executable, "run_assistant.py", "serve", "--host", "0.0.0.0",
                           "--llm", "tiny"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--token" in lines[0], proc.stderr
