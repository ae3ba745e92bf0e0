"""The latency report: figures from hand-built traces, checked against hand-computed values;
the report's files (metrics.json, summary.md, timeline.png), its command and bad traces."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest

from voice_agent import cli
from voice_agent.events import (
    AsrCommit,
    AsrFinal,
    AsrPartial,
    AudioIn,
    AudioPlayEnd,
    AudioPlayStart,
    BargeIn,
    Error,
    LlmControl,
    LlmListen,
    LlmStep,
    LlmThink,
    LlmWrite,
    TtsChunkReady,
    TurnEnd,
    TurnStart,
    VadEnd,
    VadStart,
)
from voice_agent.report import (
    REPORT_FILES,
    BadTraceError,
    audio_clock_offset,
    audio_to_session,
    compute_metrics,
    is_noise_model,
    write_report,
)
from voice_agent.trace import TraceWriter, read_trace

OFFSET = 0.5  # session t minus audio t, as the session records it for a replay
MODELS = {"llm": "tiny", "asr": "tiny.en", "tts": "en_US-joe-medium"}


def turn_one() -> list:
    """A question "what is two plus two", thoughts while listening, a two-chunk answer.

    Audio times are 0.5 s behind the session clock: the user's speech ends at audio 2.0,
    session 2.5.
    """
    return [
        LlmStep(t=0.2, state="listening", ms=5.0, turn=0),  # warm-up, before any turn
        TurnStart(t=1.0, turn=1),
        VadStart(t=1.1, audio_t=0.5),
        AudioIn(t=1.5, audio_t=1.0, rms=0.1),
        AsrPartial(t=1.6, text="what"),
        LlmStep(t=1.7, state="thinking", ms=20.0, turn=1),
        AsrCommit(t=1.8, text="what is", words=[["what", 0.5, 0.8], ["is", 0.8, 1.0]]),
        LlmListen(t=1.85, text="what is", tokens=2, turn=1),
        LlmThink(t=1.9, token=11, text="The", step=1, turn=1),
        LlmThink(t=2.0, token=12, text=" user", step=2, turn=1),
        LlmThink(t=2.1, token=13, text=" asks", step=3, turn=1),
        LlmStep(t=2.1, state="thinking", ms=30.0, turn=1),
        AsrCommit(t=2.5, text="two plus two",
                  words=[["two", 1.0, 1.3], ["plus", 1.3, 1.6], ["two", 1.6, 2.0]]),
        LlmThink(t=2.45, token=14, text=" about", step=4, turn=1),
        # after the true end of speech, though nobody knows it yet: not "while listening"
        LlmThink(t=2.6, token=16, text=" simple", step=5, turn=1),
        VadEnd(t=2.8, audio_t=2.0),
        AsrFinal(t=2.9, text="what is two plus two", speech_end=2.0),
        LlmThink(t=3.0, token=15, text=" sums", step=5, turn=1),
        LlmStep(t=3.0, state="thinking", ms=40.0, turn=1),
        LlmControl(t=3.05, p_yes=0.8, p_no=0.2, decision=True, ms=9.0, step=5, turn=1),
        LlmWrite(t=3.1, token=21, text="Four", step=6, turn=1),
        LlmStep(t=3.1, state="thinking_and_writing", ms=50.0, batch=2, step=6, turn=1),
        LlmWrite(t=3.2, token=22, text=".", step=7, turn=1),
        LlmWrite(t=3.3, token=23, text=" Yes.", step=8, turn=1),
        TtsChunkReady(t=3.4, index=0, text="Four.", synth_s=0.2, audio_s=1.0, turn=1),
        AudioPlayStart(t=3.45, index=0, turn=1),
        TtsChunkReady(t=4.0, index=1, text="Yes.", synth_s=0.3, audio_s=0.5, turn=1),
        AudioPlayEnd(t=4.45, index=0, turn=1),
        AudioPlayStart(t=4.6, index=1, turn=1),
        AudioPlayEnd(t=5.1, index=1, turn=1),
        TurnEnd(t=5.2, turn=1, user="what is two plus two", answer="Four. Yes."),
    ]


def turn_two() -> list:
    """A second, short turn: speech ends at session 7.0, one chunk plays at 7.7."""
    return [
        TurnStart(t=6.0, turn=2),
        VadStart(t=6.1, audio_t=5.6),
        AsrCommit(t=6.9, text="thanks", words=[["thanks", 5.7, 6.4]]),
        AsrFinal(t=7.2, text="thanks", speech_end=6.5),
        VadEnd(t=7.3, audio_t=6.5),
        LlmWrite(t=7.4, token=31, text="Welcome.", step=1, turn=2),
        LlmStep(t=7.4, state="writing", ms=10.0, step=1, turn=2),
        TtsChunkReady(t=7.6, index=0, text="Welcome.", synth_s=0.1, audio_s=0.8, turn=2),
        AudioPlayStart(t=7.7, index=0, turn=2),
        AudioPlayEnd(t=8.5, index=0, turn=2),
        TurnEnd(t=8.6, turn=2, user="thanks", answer="Welcome."),
    ]


def write_trace(path: Path, events: list, *, config: dict | None = None,
                models: dict | None = None) -> Path:
    with TraceWriter(path, config={"audio_clock_offset": OFFSET} if config is None else config,
                     models=MODELS if models is None else models) as tw:
        for e in events:
            tw.write(e)
    return path


def metrics_of(tmp_path: Path, events: list, **kw) -> dict:
    return compute_metrics(*read_trace(write_trace(tmp_path / "trace.jsonl", events, **kw)))


def test_one_turn_figures_match_hand_computed_values(tmp_path):
    m = metrics_of(tmp_path, turn_one())
    [t] = m["turns"]
    approx = pytest.approx
    assert t["turn"] == 1 and t["complete"] and t["speech_end"] == approx(2.5)
    assert t["response_latency"] == approx(3.45 - 2.5)
    assert t["delay_to_first"] == approx(0.95)
    assert t["first_answer_token"] == approx(3.1 - 2.5)
    assert t["stall_total"] == approx(4.6 - 4.45)
    assert t["stall_max"] == approx(0.15)
    assert t["total_delay"] == approx(0.95 + 0.15)
    assert t["asr_final_latency"] == approx(2.9 - 2.5)
    # word ends 1.3, 1.5 committed at 1.8; 1.8, 2.1, 2.5 at 2.5 -> lags .5 .3 .7 .4 0
    assert t["asr_commit_lag"] == approx(0.4)
    assert t["thought_tokens_while_listening"] == 4  # 1.9, 2.0, 2.1, 2.45; not 2.6, 3.0
    assert t["listen_thoughts_kept"] == 5 and t["draft_checks"] == 0  # written by asr.final (2.9)
    assert t["tts_rtf"] == approx(0.5 / 1.5, abs=1e-4)
    assert t["ms_per_step"] == {"thinking": 30.0, "thinking_and_writing": 50.0}
    assert t["steps"] == {"thinking": 3, "thinking_and_writing": 1}
    assert (t["think_tokens"], t["write_tokens"], t["listen_tokens"]) == (6, 3, 2)
    assert (t["chunks_ready"], t["chunks_played"], t["control_checks"]) == (2, 2, 1)
    assert t["answer_audio_s"] == approx(1.0 + 0.5)
    assert (t["bargeins"], t["interrupted"], t["responses"]) == (0, False, 1)
    assert (t["user"], t["answer"]) == ("what is two plus two", "Four. Yes.")
    assert t["playback"] == [
        {"index": 0, "start": 3.45, "end": 4.45, "interrupted": False, "first": True,
         "delay": 0.95},
        {"index": 1, "start": 4.6, "end": 5.1, "interrupted": False, "first": False,
         "delay": 0.15},
    ]
    s = m["session"]
    assert s["ms_per_step"] == {"listening": 5.0, "thinking": 30.0, "thinking_and_writing": 50.0}
    assert s["response_latency"] == approx(0.95) and s["turns"] == 1
    assert m["noise_model"] is True and m["audio_clock_offset"] == OFFSET


def test_two_turns_and_session_medians(tmp_path):
    m = metrics_of(tmp_path, turn_one() + turn_two())
    one, two = m["turns"]
    assert two["speech_end"] == pytest.approx(7.0)
    assert two["response_latency"] == pytest.approx(0.7)
    assert two["total_delay"] == pytest.approx(0.7)
    assert (two["stall_total"], two["stall_max"]) == (0.0, 0.0)
    assert two["asr_final_latency"] == pytest.approx(0.2)
    assert two["asr_commit_lag"] == pytest.approx(6.9 - 6.9)
    assert two["thought_tokens_while_listening"] == 0
    # each turn keeps only its own events
    assert (one["write_tokens"], two["write_tokens"]) == (3, 1)
    assert one["asr_commit_lag"] == pytest.approx(0.4)
    s = m["session"]
    assert s["turns"] == s["complete_turns"] == s["answered_turns"] == 2
    assert s["response_latency"] == pytest.approx((0.95 + 0.7) / 2)
    assert s["total_delay"] == pytest.approx((1.1 + 0.7) / 2)
    assert s["stall_max"] == pytest.approx(0.15 / 2)
    assert (s["think_tokens"], s["write_tokens"]) == (6, 4)
    assert s["duration"] == pytest.approx(8.6)


def barge_in_turns() -> list:
    """Turn 1's second chunk is cut by the user, whose words open turn 2."""
    return [
        TurnStart(t=1.0, turn=1),
        VadStart(t=1.0, audio_t=0.5),
        AsrFinal(t=2.2, text="tell me a story", speech_end=1.5),  # session 2.0
        VadEnd(t=2.3, audio_t=1.5),
        LlmWrite(t=2.3, token=1, text="Once", step=1, turn=1),
        TtsChunkReady(t=2.5, index=0, text="Once upon a time,", synth_s=0.2, audio_s=1.0, turn=1),
        AudioPlayStart(t=2.6, index=0, turn=1),
        TtsChunkReady(t=3.2, index=1, text="there was a cat", synth_s=0.2, audio_s=1.2, turn=1),
        AudioPlayEnd(t=3.6, index=0, turn=1),
        AudioPlayStart(t=3.8, index=1, turn=1),
        TtsChunkReady(t=4.0, index=2, text="who slept.", synth_s=0.2, audio_s=0.9, turn=1),
        VadStart(t=4.1, audio_t=3.55),
        BargeIn(t=4.3, turn=1, heard_chars=22, heard_tokens=6),
        AudioPlayEnd(t=4.32, index=1, turn=1, interrupted=True),
        TurnEnd(t=4.4, turn=1, user="tell me a story", answer="Once upon a time, there",
                interrupted=True),
        TurnStart(t=4.4, turn=2),
        AsrFinal(t=5.3, text="stop", speech_end=4.5),  # session 5.0
        VadEnd(t=5.4, audio_t=4.5),
        LlmWrite(t=5.5, token=2, text="Sure", step=2, turn=2),
        TtsChunkReady(t=5.7, index=0, text="Sure.", synth_s=0.1, audio_s=0.4, turn=2),
        AudioPlayStart(t=5.8, index=0, turn=2),
        AudioPlayEnd(t=6.2, index=0, turn=2),
        TurnEnd(t=6.3, turn=2, user="stop", answer="Sure."),
    ]


def test_barge_in_marks_the_turn_and_counts_only_what_played(tmp_path):
    m = metrics_of(tmp_path, barge_in_turns())
    one, two = m["turns"]
    assert (one["bargeins"], one["interrupted"]) == (1, True)
    assert (one["chunks_ready"], one["chunks_played"]) == (3, 2)
    assert one["response_latency"] == pytest.approx(0.6)
    assert one["stall_total"] == pytest.approx(0.2)
    assert one["total_delay"] == pytest.approx(0.8)
    assert one["answer_audio_s"] == pytest.approx(1.0 + 0.52)
    assert (two["bargeins"], two["interrupted"]) == (0, False)
    assert two["response_latency"] == pytest.approx(0.8)
    s = m["session"]
    assert (s["bargeins"], s["interrupted_turns"]) == (1, 1)


def test_barge_in_within_one_turn_counts_both_responses(tmp_path):
    # a session that keeps the turn open across the barge-in: two ends of speech
    events = []
    for e in barge_in_turns():
        if isinstance(e, TurnEnd) or (isinstance(e, TurnStart) and e.turn == 2):
            continue
        events.append(dataclasses.replace(e, turn=1) if getattr(e, "turn", None) == 2 else e)
    events.append(TurnEnd(t=6.3, turn=1, user="tell me a story stop", answer="…",
                          interrupted=True))
    [t] = metrics_of(tmp_path, events)["turns"]
    assert t["responses"] == 2
    assert t["response_latency"] == pytest.approx(0.6)  # the first response's
    assert t["first_answer_token"] == pytest.approx(0.3)
    # 0.6 + 0.2 before the barge-in, then 5.8 - 5.0 after the second end of speech
    assert t["total_delay"] == pytest.approx(0.6 + 0.2 + 0.8)
    assert t["stall_total"] == pytest.approx(0.2) and t["stall_max"] == pytest.approx(0.2)
    assert t["thought_tokens_while_listening"] == 0


def test_a_turn_without_an_answer_has_no_delays(tmp_path):
    events = [
        TurnStart(t=0.5, turn=1),
        VadStart(t=0.6, audio_t=0.1),
        LlmThink(t=1.2, token=5, text="Hmm", step=1, turn=1),
        AsrCommit(t=1.5, text="hmm", words=[["hmm", 0.2, 0.9]]),
        AsrFinal(t=1.7, text="hmm", speech_end=0.9),  # session 1.4
        LlmThink(t=1.8, token=6, text="?", step=2, turn=1),
        Error(t=2.0, where="tts", message="voice failed"),
        TurnEnd(t=2.5, turn=1, user="hmm", answer=""),
    ]
    m = metrics_of(tmp_path, events + turn_two())
    t = m["turns"][0]
    for key in ("response_latency", "first_answer_token", "delay_to_first", "total_delay",
                "stall_total", "stall_max", "tts_rtf"):
        assert t[key] is None, key
    assert t["asr_final_latency"] == pytest.approx(0.3)
    assert t["asr_commit_lag"] == pytest.approx(1.5 - 1.4)
    assert t["thought_tokens_while_listening"] == 1
    assert (t["chunks_played"], t["errors"], t["interrupted"]) == (0, 1, False)
    s = m["session"]
    assert s["answered_turns"] == 1 and s["errors"] == 1
    assert s["response_latency"] == pytest.approx(0.7)  # the answered turn alone
    assert s["asr_final_latency"] == pytest.approx((0.3 + 0.2) / 2)


def test_a_torn_last_line_leaves_a_cut_off_turn(tmp_path):
    events = turn_one()
    cut = [e for e in events if e.t <= 3.45]  # crash while the first chunk plays
    path = write_trace(tmp_path / "trace.jsonl", cut)
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"t": 3.5, "ev": "audio.pla')
    m = compute_metrics(*read_trace(path))
    [t] = m["turns"]
    assert t["complete"] is False and t["end"] == pytest.approx(3.45)
    assert t["response_latency"] == pytest.approx(0.95)
    assert (t["stall_total"], t["total_delay"]) == (0.0, pytest.approx(0.95))
    assert t["answer"] == "Four. Yes."  # from the writer tokens: no turn.end to say
    assert t["interrupted"] is False


def test_speech_end_falls_back_to_vad_when_there_is_no_final(tmp_path):
    events = [e for e in turn_one() if not isinstance(e, AsrFinal)]
    [t] = metrics_of(tmp_path, events)["turns"]
    assert t["speech_end"] == pytest.approx(2.5)  # vad.end audio_t 2.0 + offset
    assert t["response_latency"] == pytest.approx(0.95)
    assert t["asr_final_latency"] is None


def test_audio_clock_mapping():
    assert audio_clock_offset({"config": {"audio_clock_offset": 1.25}}) == 1.25
    assert audio_clock_offset({"config": {"audio": {"audio_clock_offset": -0.5}}}) == -0.5
    assert audio_clock_offset({"config": {}}) == 0.0
    assert audio_clock_offset({}) == 0.0
    assert audio_to_session(2.0, 1.25) == 3.25


def test_without_an_offset_audio_time_is_session_time(tmp_path):
    [t] = metrics_of(tmp_path, turn_one(), config={})["turns"]
    assert t["speech_end"] == pytest.approx(2.0)
    assert t["response_latency"] == pytest.approx(1.45)


def test_a_fast_replay_places_the_end_of_speech_where_it_was_noticed(tmp_path):
    """--fast feeds audio faster than real time: no offset maps it, and a latency measured
    from the audio time came out negative. The end is the vad.end's session time."""
    config = {"audio_clock_offset": OFFSET, "audio_realtime": False}
    [t] = metrics_of(tmp_path, turn_one(), config=config)["turns"]
    vad_end = next(e for e in turn_one() if isinstance(e, VadEnd))
    assert t["speech_end"] == pytest.approx(vad_end.t)
    assert t["response_latency"] == pytest.approx(3.45 - vad_end.t)
    assert t["asr_commit_lag"] is None  # audio word times have no session time here


@pytest.mark.parametrize("llm, noise", [
    ("tiny", True), ({"name": "tiny", "path": "/x"}, True), ({"name": "x", "noise": True}, True),
    ({"name": "t", "description": "random-init tiny Qwen3 for tests: its output is noise"}, True),
    ("tiny (random-init: output is noise)", True), ("embedded", False),
    ("TinyLlama-1.1B", False), ({"name": "Qwen3-0.6B"}, False), (None, False),
])
def test_noise_model_detection(llm, noise):
    assert is_noise_model({"llm": llm}) is noise


def test_figures_agree_with_the_raw_trace(tmp_path):
    path = write_trace(tmp_path / "trace.jsonl", turn_one() + turn_two())
    m = compute_metrics(*read_trace(path))
    raw = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    for t in m["turns"]:
        mine = [r for r in raw if r.get("turn") == t["turn"]]
        final = next(r for r in raw if r["ev"] == "asr.final" and t["start"] <= r["t"] <= t["end"])
        first_play = min(r["t"] for r in mine if r["ev"] == "audio.play_start")
        first_write = min(r["t"] for r in mine if r["ev"] == "llm.write")
        assert t["response_latency"] == pytest.approx(first_play - final["speech_end"] - OFFSET)
        assert t["first_answer_token"] == pytest.approx(first_write - final["speech_end"] - OFFSET)
        assert t["write_tokens"] == sum(r["ev"] == "llm.write" for r in mine)
        assert t["think_tokens"] == sum(r["ev"] == "llm.think" for r in mine)
    assert m["session"]["bargeins"] == sum(r["ev"] == "bargein" for r in raw)

def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def run_command(*argv: str) -> int:
    """``python run_assistant.py report ARGV...``, in process."""
    return cli.main(["report", *argv])


def test_write_report_writes_three_readable_files(tmp_path):
    trace = write_trace(tmp_path / "run" / "trace.jsonl", turn_one() + turn_two())
    out = tmp_path / "report"
    m = write_report(trace, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["turns"] == m["turns"] and on_disk["session"] == m["session"]
    assert on_disk["turns"][0]["response_latency"] == pytest.approx(0.95)
    w, h = png_size(out / "timeline.png")
    assert 1200 <= w <= 3600 and 500 <= h <= 900, (w, h)
    import matplotlib.image

    pixels = matplotlib.image.imread(out / "timeline.png")
    assert pixels.shape[:2] == (h, w) and pixels.std() > 0.05  # drawn, not blank

    md = (out / "summary.md").read_text()
    assert "random-init" in md  # the tiny model's answers are called noise
    assert "“what is two plus two”" in md and "“Four. Yes.”" in md
    assert "| 1 | 950 ms | 600 ms | 950 ms | 1100 ms | 150 ms | 150 ms | 400 ms |" in md
    assert "| 2 | 700 ms |" in md


def test_report_defaults_to_the_trace_folder_and_a_real_model_gets_no_noise_note(tmp_path):
    trace = write_trace(tmp_path / "trace.jsonl", barge_in_turns(),
                        models={**MODELS, "llm": {"name": "Qwen3-0.6B"}})
    m = write_report(trace)
    assert Path(m["files"]["timeline.png"]).parent == tmp_path
    md = (tmp_path / "summary.md").read_text()
    assert "random-init" not in md and "`Qwen3-0.6B`" in md
    assert "interrupted, 1 barge-in(s)" in md
    assert m["session"]["bargeins"] == 1


def test_command_prints_json_last(tmp_path, capsys):
    trace = write_trace(tmp_path / "trace.jsonl", turn_one())
    assert run_command(str(trace), "--out", str(tmp_path / "r"), "--json") == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["response_latency"] == pytest.approx(0.95)
    assert summary["out"] == str(tmp_path / "r") and summary["noise_model"] is True
    assert Path(summary["files"]["summary.md"]).is_file()


def _header(**over) -> str:
    rec = {"ev": "header", "schema": 1, "t": 0.0, "config": {}, "models": {}, **over}
    return json.dumps(rec) + "\n"


@pytest.mark.parametrize("name, content, expect", [
    ("missing.jsonl", None, "no such trace file"),
    ("empty.jsonl", "", "empty trace"),
    ("garbage.jsonl", "hello\nworld\n", "not valid JSON"),
    ("binary.jsonl", b"\xff\xfe\x00\x81" * 10, "not a text file"),
    ("schema.jsonl", _header(schema=99), "schema 99"),
    ("noheader.jsonl", '{"t": 0.1, "ev": "vad.start"}\n', "first line must be the header"),
    ("unknown.jsonl", _header() + '{"t": 0.1, "ev": "nope"}\n', "unknown event 'nope'"),
    ("badfield.jsonl", _header() + '{"t": 0.1, "ev": "audio.play_start", "turn": "x"}\n',
     "field 'turn' must be of type int"),
])
def test_bad_traces_give_one_clear_line(tmp_path, capsys, name, content, expect):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert run_command(str(path), "--out", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expect in err, err
    assert not (tmp_path / "r").exists()  # nothing half-written
    with pytest.raises(BadTraceError):  # what the session's own call gets
        write_report(path, tmp_path / "r")


def test_a_trace_with_only_a_header_gives_an_empty_report(tmp_path):
    m = write_report(write_trace(tmp_path / "trace.jsonl", []))
    assert m["turns"] == [] and m["session"]["turns"] == 0
    assert m["session"]["response_latency"] is None
    assert "No turn was logged." in (tmp_path / "summary.md").read_text()
    assert png_size(tmp_path / "timeline.png")[0] >= 1200


def test_a_folder_is_not_a_trace(tmp_path):
    with pytest.raises(BadTraceError, match="not a file"):
        write_report(tmp_path, tmp_path / "r")


def test_listen_thoughts_kept_follows_draft_checks(tmp_path):
    """A re-read that takes tokens back leaves only the kept ones counted as thinking done
    while the user spoke; the thinker's later tokens are not."""
    from voice_agent.events import LlmDraftCheck

    events = []
    for e in turn_one():
        events.append(e)
        if isinstance(e, LlmThink) and e.t == 2.45:  # the draft is The user asks about
            events.append(LlmDraftCheck(t=2.5, kept=2, dropped=2, text="The user", ms=30.0, turn=1))
    [t] = metrics_of(tmp_path, events)["turns"]
    assert t["draft_checks"] == 1
    assert t["listen_thoughts_kept"] == 3  # The, user (kept), simple (2.6 <= 2.9); not sums (3.0)
