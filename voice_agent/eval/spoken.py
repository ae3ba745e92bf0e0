"""One problem, spoken: the question is synthesised once with piper (cached as a WAV) and
replayed through the whole session (VAD, streaming ASR, the model worker, chunker, TTS,
a WAV sink), in real time on the session clock, as a person would ask it.

The session runs its components on threads against the wall clock; it has no simulated
clock for the whole pipeline, so a spoken problem takes as long as asking it and hearing
the answer. Each problem keeps its run folder (trace.jsonl, out.wav, metrics.json).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from voice_agent.asr.wer import word_error_rate
from voice_agent.eval.check import check
from voice_agent.eval.data import Problem
from voice_agent.eval.delay import Synthesize, chunk_tokens
from voice_agent.eval.text import _r, delay_figures

PAD_S = 1.0  # silence after the question, so the end of speech is detected


def transcript_wer(question: str, transcript: str) -> float:
    """The transcript's word error rate against the question as written (0: heard word for
    word; report.py splits spoken accuracy on it)."""
    return round(word_error_rate(question, transcript), 4)


def question_wav(problem: Problem, tts: Any, cache_dir: Path) -> Path:
    """The problem read aloud by ``tts`` (speakable form), synthesised once per text and
    voice; later runs reuse the file."""
    import numpy as np
    import soundfile as sf

    from voice_agent.tts.normalize import normalize

    text = normalize(problem.problem)
    key = hashlib.sha256(f"{tts.path.name}\n{text}".encode()).hexdigest()[:20]
    path = cache_dir / f"{key}.wav"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        audio = np.concatenate([a for a in tts.synthesize(text)] or [np.zeros(1, np.float32)])
        part = path.with_suffix(".partial.wav")
        sf.write(part, audio, tts.sample_rate, subtype="PCM_16")
        part.rename(path)
    return path


def run_spoken(problem: Problem, wav: Path, *, config: Any, models: Any, decoder: Any,
               whisper: Any, tts: Any, out_dir: Path, synth: Synthesize) -> dict[str, Any]:
    """Replay ``wav`` through a whole session in ``config.session.mode``; score the answer
    heard; report the live figures (b) and the post-hoc model (a) on the same tokens."""
    from voice_agent.audio.sources import WavSource
    from voice_agent.runner import run_session
    from voice_agent.trace import read_trace

    result = run_session(
        source_factory=lambda clock: WavSource(wav, clock, realtime=True, pad_silence_s=PAD_S),
        config=config, models=models, out_dir=out_dir, decoder=decoder, whisper=whisper,
        tts=tts, view=None)
    if result.exit_code == 130:  # Ctrl-C / SIGTERM reached the session: stop the whole eval
        raise KeyboardInterrupt
    transcript = " ".join(t["user"] for t in result.turns if t["user"])
    heard = " ".join(t["answer"] for t in result.turns if t["answer"])
    verdict = check(heard, problem.answer, problem.kind, problem.choices)
    turns = result.metrics.get("turns") or [{}]
    head = next((t for t in turns if t.get("response_latency") is not None), turns[0])
    _, events = read_trace(out_dir / "trace.jsonl")
    end = head.get("speech_end")
    # (a) on the session's own writer tokens, timed from the end of speech
    writes = [(e.get("text", ""), float(e["t"]) - end) for e in events
              if e.get("ev") == "llm.write" and end is not None and float(e["t"]) >= end]
    thoughts = ""
    for e in events:  # a draft check replaces the thoughts so far (engine.check_listen_thoughts)
        if e.get("ev") == "llm.draft_check":
            thoughts = e.get("text", "")
        elif e.get("ev") == "llm.think":
            thoughts += e.get("text", "")
    return {
        "id": problem.id, "prediction": verdict.prediction, "answer": problem.answer,
        "correct": verdict.correct, "kind": verdict.kind, "thoughts": thoughts,
        "answer_text": heard, "transcript": transcript,
        "transcript_wer": transcript_wer(problem.problem, transcript),
        "trace": str(out_dir / "trace.jsonl"),
        "session_error": result.error, "turns": len(result.turns),
        "first_answer_token_s": _r(head.get("first_answer_token")),
        "response_latency_s": _r(head.get("response_latency")),
        "live_delay_to_first": _r(head.get("delay_to_first")),
        "live_total_delay": _r(head.get("total_delay")),
        "answer_tokens": len(writes),
        **delay_figures(chunk_tokens(writes), synth),
    }
