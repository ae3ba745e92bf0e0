"""The wire protocol without sockets: event translation, client checks, settings, the
rate limiter and the shared worker's schedule over real (tiny) engines."""

from __future__ import annotations

import base64

import pytest

from voice_agent.events import (AsrCommit, AsrFinal, BargeIn, LlmStep, LlmThink, LlmWrite,
                                TurnEnd, TurnStart, VadEnd, VadStart)
from voice_agent.server.app import origin_allowed, token_ok
from voice_agent.server.limits import RateLimiter
from voice_agent.server.protocol import (ClientError, SessionOptions, Translator, decode_audio,
                                         parse_client_event)
from voice_agent.server.settings import ServerConfigError, ServerSettings


def test_a_turn_translates_to_realtime_events_with_consistent_ids():
    tr = Translator("sess_x_abcdef12")
    out = []
    for ev in [VadStart(0.5, audio_t=0.4), TurnStart(0.5, turn=1),
               AsrCommit(1.0, text="What is"), LlmThink(1.1, text=" hmm", turn=1),
               LlmStep(1.1, state="listening", turn=1), LlmStep(1.2, state="listening", turn=1),
               VadEnd(2.0, audio_t=1.9), AsrFinal(2.2, text="What is it?"),
               LlmWrite(2.3, text=" It", turn=1), BargeIn(2.5, turn=1, heard_tokens=1),
               TurnEnd(3.0, turn=1, user="What is it?", answer="It", interrupted=True)]:
        out += tr(ev)
    kinds = [e["type"] for e in out]
    assert kinds == [
        "input_audio_buffer.speech_started", "response.created", "response.output_item.added",
        "conversation.item.input_audio_transcription.delta", "voice_agent.thought.delta",
        "voice_agent.engine.state",  # once: the state did not change at the second step
        "input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
        "conversation.item.added", "conversation.item.input_audio_transcription.completed",
        "response.output_audio_transcript.delta", "voice_agent.barge_in",
        "response.output_audio.done", "response.output_audio_transcript.done",
        "response.output_item.done", "response.done"]
    user_items = {e["item_id"] for e in out if e["type"].startswith(("input_audio", "conversation.item.input"))}
    assert user_items == {"item_abcdef12_u1"}
    done = out[-1]["response"]
    assert done["id"] == "resp_abcdef12_1" and done["status"] == "cancelled"
    assert out[0]["audio_start_ms"] == 400 and out[6]["audio_end_ms"] == 1900


@pytest.mark.parametrize("raw, code", [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_event"),
    ('{"type": 3}', "invalid_event"),
    ('{"type": "response.frobnicate"}', "unknown_event"),
])
def test_bad_client_messages_are_refused_by_code(raw, code):
    with pytest.raises(ClientError) as e:
        parse_client_event(raw)
    assert e.value.code == code
    assert e.value.to_event()["type"] == "error"


def test_audio_must_be_base64_pcm16():
    assert decode_audio({"audio": base64.b64encode(b"\x01\x00\x02\x00").decode()}) == b"\x01\x00\x02\x00"
    for bad in ({"audio": "!!!"}, {"audio": 5}, {"audio": base64.b64encode(b"\x01\x00\x02").decode()}):
        with pytest.raises(ClientError):
            decode_audio(bad)


def test_session_update_sets_rates_and_refuses_unknown_formats_whole():
    opts = SessionOptions()
    opts.update({"type": "session.update", "session": {
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
        "instructions": "Be brief.", "voice_agent": {"binary_audio": True}}})
    assert (opts.input_rate, opts.output_rate, opts.instructions, opts.binary_audio) == \
        (16000, 24000, "Be brief.", True)
    for fmt in ({"type": "audio/pcmu"}, {"type": "audio/pcm", "rate": 12345}, "g711_ulaw"):
        with pytest.raises(ClientError) as e:
            opts.update({"session": {"instructions": "changed",
                                     "audio": {"output": {"format": fmt}}}})
        assert e.value.code == "unsupported_audio_format"
    assert opts.instructions == "Be brief."  # nothing of a refused update applies
    with pytest.raises(ClientError, match="at most"):
        opts.update({"session": {"instructions": "x" * 5000}})
    described = opts.describe("sess_1", "tiny")
    assert described["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 16000}


def test_rate_limiter_allows_the_burst_then_the_rate():
    t = [0.0]
    rl = RateLimiter(rate=10, burst=5, now=lambda: t[0])
    assert all(rl.allow() for _ in range(5)) and not rl.allow()
    t[0] += 0.35  # 3.5 tokens back
    assert [rl.allow() for _ in range(4)] == [True, True, True, False]


def test_loopback_by_default_and_a_non_loopback_host_needs_a_token():
    import argparse

    from voice_agent.commands import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    assert parser.parse_args([]).host == "127.0.0.1" and ServerSettings().host == "127.0.0.1"
    ServerSettings(host="127.0.0.1").check()
    ServerSettings(host="::1").check()
    ServerSettings(host="0.0.0.0", token="s3cret").check()
    for host in ("0.0.0.0", "192.168.1.5", "myhost.example"):
        with pytest.raises(ServerConfigError, match="--token"):
            ServerSettings(host=host).check()


def test_origin_and_token_checks():
    s = ServerSettings(allowed_origins=("https://app.example",))
    assert origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765", s)
    assert origin_allowed("https://app.example", "127.0.0.1:8765", s)
    assert not origin_allowed("http://evil.example", "127.0.0.1:8765", s)
    assert not origin_allowed("null", "127.0.0.1:8765", s)
    assert token_ok({"authorization": "Bearer abc"}, {}, "abc")
    assert token_ok({"sec-websocket-protocol": "realtime, openai-insecure-api-key.abc"}, {}, "abc")
    assert token_ok({}, {"token": "abc"}, "abc")
    assert not token_ok({"authorization": "Bearer abd"}, {"token": "x"}, "abc")


def test_shared_worker_round_robin_and_low_playback_first(tiny_llm):
    """Three real tiny engines on one model thread: each gets steps (none starves), and a
    writing session whose playback runs low is served before the others."""
    import asyncio

    from voice_agent.config import load_config
    from voice_agent.core import Engine
    from voice_agent.runner import VOICE_ENGINE_DEFAULTS
    from voice_agent.shared_worker import SharedModelWorker
    from voice_agent.worker import BeginTurn, EndOfTurn, Listen

    model, tok = tiny_llm
    cfg = load_config(engine={**VOICE_ENGINE_DEFAULTS, "max_thoughts": 2000, "max_answer": 2000,
                              "max_writer_wait": 1}).engine
    pool = SharedModelWorker()

    async def main() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        low = [False, False, False]
        lanes = []
        for i in range(3):
            eng = await asyncio.wrap_future(pool.call(lambda: Engine(model, tok, cfg)))
            lanes.append(pool.lane(eng, loop, lambda g, evs: None, eng.clock,
                                   playback_low=lambda i=i: low[i]))
        for lane in lanes:
            lane.start()
            lane.send(BeginTurn(1, [], None))
            lane.send(Listen(1, "count to a thousand please"))
            lane.send(EndOfTurn(1))
        await asyncio.sleep(1.5)
        fair = [pool.served.get(id(ln), 0) for ln in lanes]
        for _ in range(200):  # wait until lane 2's writer is active, then starve its playback
            if getattr(lanes[2].decoder, "state", "") in ("writing", "thinking_and_writing"):
                break
            await asyncio.sleep(0.01)
        pool.picks.clear()
        low[2] = True
        await asyncio.sleep(1.0)
        picks = list(pool.picks)
        for lane in lanes:
            await asyncio.to_thread(lane.shutdown)
        return fair, picks, [id(ln) for ln in lanes]

    try:
        fair, picks, ids = asyncio.run(main())
    finally:
        pool.close()
    assert min(fair) > 0 and max(fair) - min(fair) <= 0.2 * max(fair) + 5, fair
    urgent = [lane for lane, tier, _ in picks if tier == 0]
    assert len(urgent) >= 5 and set(urgent) == {ids[2]}, (len(urgent), set(urgent))
    # every decision took the best tier on offer
    assert all(tier == min(tiers.values()) for _, tier, tiers in picks)


def test_shared_worker_serves_an_owed_answer_before_listening_thoughts(tiny_llm):
    """A session whose user finished is served before one still thinking while listening."""
    import asyncio

    from voice_agent.config import load_config
    from voice_agent.core import Engine
    from voice_agent.runner import VOICE_ENGINE_DEFAULTS
    from voice_agent.shared_worker import SharedModelWorker
    from voice_agent.worker import BeginTurn, EndOfTurn, Listen

    model, tok = tiny_llm
    cfg = load_config(engine={**VOICE_ENGINE_DEFAULTS, "max_listen_thoughts": 1000,
                              "max_thoughts": 2000, "max_answer": 1000}).engine
    pool = SharedModelWorker()

    async def main() -> tuple[list, list[int]]:
        loop = asyncio.get_running_loop()
        lanes = []
        for done in (False, True):
            eng = await asyncio.wrap_future(pool.call(lambda: Engine(model, tok, cfg)))
            lane = pool.lane(eng, loop, lambda g, evs: None, eng.clock)
            lane.start()
            lane.send(BeginTurn(1, [], None))
            lane.send(Listen(1, "tell me a long story about the sea"))
            if done:
                lane.send(EndOfTurn(1))
            lanes.append(lane)
        await asyncio.sleep(1.0)
        picks = list(pool.picks)
        for lane in lanes:
            await asyncio.to_thread(lane.shutdown)
        return picks, [id(ln) for ln in lanes]

    try:
        picks, (listening, owed) = asyncio.run(main())
    finally:
        pool.close()
    both = [lane for lane, _, tiers in picks if len(tiers) == 2]
    assert both and both.count(owed) == len(both), (len(both), both.count(owed))
    assert all(tiers[listening] == 2 for _, _, tiers in picks if listening in tiers)
