"""Latency figures from a session trace: per turn, and medians over the session.

All times are seconds on the session clock; ``ms_per_step`` is in milliseconds. A figure
that does not apply to a turn (no answer was played, no ASR final was logged) is ``None``.

End of user speech
    ``speech_end`` = the ``speech_end`` field of ``asr.final`` (the true end of voiced audio,
    on the audio timeline) mapped to the session clock with ``audio_to_session``. When a turn
    has no ``asr.final``, the ``audio_t`` of its ``vad.end`` stands in.

Responses
    A turn may hold more than one user utterance (the user paused, or barged in and the
    session kept the turn). Each end of speech opens a *response*: the answer audio and
    writer tokens from that moment until the next end of speech. The turn's headline
    figures come from its first response that played audio (else its first response).

Playback delays (AsyncReasoning §3, with real playback instead of a model of it)
    The reference computes ``start_i = max(end_{i-1}, ready_i)`` from synthesis times. We
    log when each chunk really started and ended playing, so, per response, with chunks
    ordered by ``audio.play_start``:

    - ``delay_0 = play_start_0 - speech_end``;
    - ``delay_i = max(0, play_start_i - play_end_{i-1})`` for i >= 1 (skipped when
      ``play_end_{i-1}`` was never logged).

    ``delay_to_first`` = delay_0 of the headline response; in live playback it equals
    ``response_latency`` by construction. ``total_delay`` = the sum of all delays of all
    responses of the turn: the silence the user waited through. ``stall_total`` and
    ``stall_max`` = the sum and the largest of the delays with i >= 1 (silences between
    answer chunks after the first one started; 0.0 with one chunk).

Other per-turn figures
    - ``response_latency``: headline ``speech_end`` -> its first ``audio.play_start``.
    - ``first_answer_token``: headline ``speech_end`` -> its first ``llm.write``.
    - ``asr_final_latency``: headline ``speech_end`` -> the ``asr.final`` event's ``t``.
    - ``asr_commit_lag``: median over the turn's committed words of
      ``asr.commit.t - audio_to_session(word_end)``.
    - ``thought_tokens_while_listening``: ``llm.think`` events of the turn with
      ``turn.start <= t <= speech_end``.
    - ``listen_thoughts_kept``: tokens of the turn's final thoughts written before its
      ``asr.final`` (``llm.think`` events, less those a later ``llm.draft_check`` took back):
      thinking done while the user spoke. ``draft_checks`` counts the re-reads
      (``engine.check_listen_thoughts``).
    - ``tts_rtf``: sum of ``synth_s`` / sum of ``audio_s`` over the turn's
      ``tts.chunk_ready`` (below 1 is faster than real time).
    - ``ms_per_step``: median ``llm.step.ms`` per engine state; ``steps``: counts per state.
    - counts: ``think_tokens``, ``write_tokens``, ``listen_tokens``, ``control_checks``,
      ``chunks_ready``, ``chunks_played``, ``bargeins``; ``interrupted`` (the ``turn.end``
      flag, or, for a cut-off turn, whether a barge-in or interrupted playback was logged).
    - ``playback``: each played chunk's ``start``, ``end``, ``interrupted``, and the
      ``delay`` before it (``first``: the chunk opened a response, so its delay is delay_0).

Session figures are medians over the turns that have the figure, plus totals, and
``ms_per_step`` over every ``llm.step`` of the trace (warm-up steps outside turns included).
"""

from __future__ import annotations

import statistics
from typing import Any

from voice_agent.core.layout import join_heard
from voice_agent.report.turns import (
    Record,
    Turn,
    audio_clock_offset,
    audio_is_realtime,
    audio_to_session,
    split_turns,
)

REPORT_SCHEMA = 1
MEDIAN_FIGURES = (
    "response_latency", "first_answer_token", "delay_to_first", "total_delay",
    "stall_total", "stall_max", "thought_tokens_while_listening", "asr_final_latency",
    "asr_commit_lag", "tts_rtf",
)


def compute_metrics(header: Record, events: list[Record]) -> dict[str, Any]:
    """Per-turn and session latency figures of one trace (as ``read_trace`` returns it).

    Args:
        header: the trace's header line.
        events: its event records, in trace order.

    Returns:
        ``{"report_schema", "models", "noise_model", "audio_clock_offset", "turns": [...],
        "session": {...}}``; see the module docstring for each figure's definition.
    """
    events = [e for e in events if isinstance(e.get("t"), (int, float))]
    offset = audio_clock_offset(header)
    # a fast replay has no audio-to-session map: speech ends are placed where noticed
    mapping = offset if audio_is_realtime(header) else None
    turns = [turn_metrics(tr, mapping) for tr in split_turns(events)]
    models = header.get("models") or {}
    return {
        "report_schema": REPORT_SCHEMA,
        "models": models,
        "noise_model": is_noise_model(models),
        "audio_clock_offset": offset,
        "turns": turns,
        "session": session_metrics(turns, events),
    }


def is_noise_model(models: Record) -> bool:
    """Whether the header names the tiny random-init LLM, whose output is noise."""
    llm = models.get("llm") if isinstance(models, dict) else None
    if isinstance(llm, dict):  # ResolvedModel.to_dict(): the tiny one's description says so
        if llm.get("noise") is True or "noise" in str(llm.get("description") or "").lower():
            return True
        llm = llm.get("name") or llm.get("id") or ""
    text = str(llm or "").strip().lower()
    first_word = text.replace("(", " ").replace(":", " ").split()[0] if text else ""
    return first_word == "tiny" or "noise" in text or "random-init" in text


def _thoughts_kept_from(turn: Turn, until: float) -> int:
    """Tokens of the turn's final thoughts that were written by ``until``."""
    times: list[float] = []
    for e in turn.of("llm.think", "llm.draft_check"):
        if e.get("ev") == "llm.think":
            times.append(float(e["t"]))
        else:  # the thoughts are now their first `kept` tokens
            del times[int(e.get("kept") or 0):]
    return sum(1 for t in times if t <= until)


def turn_metrics(turn: Turn, offset: float | None) -> dict[str, Any]:
    """The figures of one turn (see the module docstring). ``offset`` None: a fast replay."""
    ends = _speech_ends(turn, offset)
    plays = _played_chunks(turn)
    writes = sorted(float(e["t"]) for e in turn.of("llm.write"))
    bounds = [t for t, _ in ends]
    responses = [_response(plays, writes, bounds, k) for k in range(max(len(ends), 1))]
    head_k = next((k for k, r in enumerate(responses) if r["plays"]), 0)
    head = responses[head_k]
    speech_end, final = ends[head_k] if ends else (None, None)

    all_delays = [d for r in responses for d in r["delays"] if d is not None]
    stalls = [d for r in responses for d in r["delays"][1:] if d is not None]
    played = any(r["plays"] for r in responses)
    bargeins = len(turn.of("bargein"))
    interrupted = (bool(turn.end_record.get("interrupted")) if turn.end_record else
                   bargeins > 0 or any(p["interrupted"] for p in plays))
    steps = _steps_by_state(turn.of("llm.step"))
    checks = turn.of("llm.draft_check")
    return {
        "turn": turn.turn,
        "start": _r(turn.start),
        "end": _r(turn.end),
        "complete": turn.complete,
        "speech_end": _r(speech_end),
        "responses": sum(1 for r in responses if r["plays"]),
        "response_latency": _r(_minus(head["plays"][0]["start"] if head["plays"] else None,
                                      speech_end)),
        "first_answer_token": _r(_minus(head["writes"][0] if head["writes"] else None,
                                        speech_end)),
        "delay_to_first": _r(head["delays"][0] if head["delays"] else None),
        "total_delay": _r(sum(all_delays) if played and speech_end is not None else None),
        "stall_total": _r(sum(stalls) if played else None),
        "stall_max": _r(max(stalls, default=0.0) if played else None),
        "thought_tokens_while_listening": (
            None if speech_end is None else
            sum(1 for e in turn.of("llm.think") if turn.start <= e["t"] <= speech_end)),
        "listen_thoughts_kept": (None if final is None else
                                 _thoughts_kept_from(turn, float(final["t"]))),
        "draft_checks": len(checks),
        "asr_final_latency": _r(_minus(final["t"] if final else None, speech_end)),
        "asr_commit_lag": _r(_median(_commit_lags(turn, offset))),
        "tts_rtf": _r(_tts_rtf(turn.of("tts.chunk_ready"))),
        "ms_per_step": {s: round(statistics.median(v), 3) for s, v in steps.items()},
        "steps": {s: len(v) for s, v in steps.items()},
        "think_tokens": len(turn.of("llm.think")),
        "write_tokens": len(writes),
        "listen_tokens": sum(int(e.get("tokens") or 0) for e in turn.of("llm.listen")),
        "control_checks": len(turn.of("llm.control")),
        "chunks_ready": len(turn.of("tts.chunk_ready")),
        "chunks_played": len(plays),
        "answer_audio_s": _r(sum(p["end"] - p["start"] for p in plays if p["end"] is not None)),
        "bargeins": bargeins,
        "interrupted": interrupted,
        "playback": _playback(responses),
        "errors": len(turn.of("error")),
        "user": _user_text(turn),
        "answer": _answer_text(turn),
    }


def session_metrics(turns: list[dict[str, Any]], events: list[Record]) -> dict[str, Any]:
    """Medians over turns, totals, and per-state step times over the whole trace."""
    out: dict[str, Any] = {
        "turns": len(turns),
        "complete_turns": sum(1 for t in turns if t["complete"]),
        "answered_turns": sum(1 for t in turns if t["chunks_played"]),
        "interrupted_turns": sum(1 for t in turns if t["interrupted"]),
        "bargeins": sum(1 for e in events if e.get("ev") == "bargein"),
        "errors": sum(1 for e in events if e.get("ev") == "error"),
        "duration": _r(max((float(e["t"]) for e in events), default=0.0)),
    }
    for key in MEDIAN_FIGURES:
        out[key] = _r(_median([t[key] for t in turns]))
    steps = _steps_by_state([e for e in events if e.get("ev") == "llm.step"])
    out["ms_per_step"] = {s: round(statistics.median(v), 3) for s, v in steps.items()}
    out["steps"] = {s: len(v) for s, v in steps.items()}
    out["think_tokens"] = sum(t["think_tokens"] for t in turns)
    out["write_tokens"] = sum(t["write_tokens"] for t in turns)
    return out


def _speech_ends(turn: Turn, offset: float | None) -> list[tuple[float, Record | None]]:
    """(session time of end of speech, its asr.final or None), sorted by time.

    In a fast replay (``offset`` None) audio went in faster than real time, so an end of
    speech is placed at the session time its ``vad.end`` was noticed: latencies then count
    compute from the moment the audio was in, never a negative head start.
    """
    finals = [e for e in turn.of("asr.final") if isinstance(e.get("speech_end"), (int, float))]
    if offset is None:
        noticed = [e for e in turn.of("vad.end") if isinstance(e.get("audio_t"), (int, float))]
        if not noticed:
            return sorted(((float(e["t"]), e) for e in finals), key=lambda x: x[0])
        at = lambda a: float(min(noticed, key=lambda v: abs(v["audio_t"] - a))["t"])  # noqa: E731
        ends = ([(at(e["speech_end"]), e) for e in finals] if finals else
                [(float(v["t"]), None) for v in noticed])
        return sorted(ends, key=lambda x: x[0])
    if finals:
        ends = [(audio_to_session(e["speech_end"], offset), e) for e in finals]
    else:
        ends = [(audio_to_session(e["audio_t"], offset), None) for e in turn.of("vad.end")
                if isinstance(e.get("audio_t"), (int, float))]
    return sorted(ends, key=lambda x: x[0])


def _played_chunks(turn: Turn) -> list[dict[str, Any]]:
    """Each audio.play_start with its audio.play_end (same index, not earlier), by start."""
    ends = sorted(turn.of("audio.play_end"), key=lambda e: e["t"])
    used: set[int] = set()
    plays = []
    for s in sorted(turn.of("audio.play_start"), key=lambda e: e["t"]):
        match = next((j for j, e in enumerate(ends) if j not in used
                      and e.get("index") == s.get("index") and e["t"] >= s["t"]), None)
        if match is not None:
            used.add(match)
        end = ends[match] if match is not None else None
        plays.append({"index": s.get("index"), "start": float(s["t"]),
                      "end": float(end["t"]) if end else None,
                      "interrupted": bool(end and end.get("interrupted"))})
    return plays


def _response(plays: list[dict[str, Any]], writes: list[float], bounds: list[float],
              k: int) -> dict[str, Any]:
    """Response k: the plays and writes from end of speech k to end of speech k+1.

    Anything before the first end of speech goes to response 0, so that an answer that
    started too early shows as a negative latency instead of vanishing.
    """
    lo = bounds[k] if k > 0 and k < len(bounds) else float("-inf")
    hi = bounds[k + 1] if k + 1 < len(bounds) else float("inf")
    mine = [p for p in plays if lo <= p["start"] < hi]
    delays: list[float | None] = []
    for i, p in enumerate(mine):
        if i == 0:
            delays.append(p["start"] - bounds[k] if bounds else None)
        else:
            prev_end = mine[i - 1]["end"]
            delays.append(None if prev_end is None else max(0.0, p["start"] - prev_end))
    return {"plays": mine, "writes": [w for w in writes if lo <= w < hi], "delays": delays}


def _playback(responses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each played chunk with the silence before it (``first``: it opened a response)."""
    out = []
    for r in responses:
        for i, (p, d) in enumerate(zip(r["plays"], r["delays"], strict=True)):
            out.append({"index": p["index"], "start": _r(p["start"]), "end": _r(p["end"]),
                        "interrupted": p["interrupted"], "first": i == 0, "delay": _r(d)})
    return out


def _commit_lags(turn: Turn, offset: float | None) -> list[float]:
    lags: list[float] = []
    if offset is None:  # a fast replay: audio positions have no session time
        return lags
    for e in turn.of("asr.commit"):
        for w in e.get("words") or []:
            if isinstance(w, (list, tuple)) and len(w) >= 3 and isinstance(w[2], (int, float)):
                lags.append(float(e["t"]) - audio_to_session(w[2], offset))
    return lags


def _tts_rtf(chunks: list[Record]) -> float | None:
    audio = sum(float(c.get("audio_s") or 0.0) for c in chunks)
    synth = sum(float(c.get("synth_s") or 0.0) for c in chunks)
    return synth / audio if audio > 0 else None


def _steps_by_state(steps: list[Record]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for e in steps:
        if isinstance(e.get("ms"), (int, float)):
            out.setdefault(str(e.get("state") or "?"), []).append(float(e["ms"]))
    return out


def _user_text(turn: Turn) -> str:
    if turn.end_record and turn.end_record.get("user"):
        return str(turn.end_record["user"])
    finals = [str(e.get("text") or "").strip() for e in turn.of("asr.final")]
    if any(finals):
        return " ".join(f for f in finals if f)
    return join_heard([str(e.get("text") or "") for e in turn.of("asr.commit")])


def _answer_text(turn: Turn) -> str:
    if turn.end_record and turn.end_record.get("answer"):
        return str(turn.end_record["answer"])
    return "".join(str(e.get("text") or "") for e in turn.of("llm.write")).strip()


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _median(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def _r(x: float | None) -> float | None:
    """Round to 0.1 ms: the trace stamps microseconds, and float noise helps no reader."""
    return None if x is None else round(float(x), 4)
