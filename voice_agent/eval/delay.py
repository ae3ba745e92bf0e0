"""The listener's delay, post hoc (AsyncReasoning §3, with our chunker rule and our piper).

Given the writer's tokens and the time each was produced (seconds on a clock that started
before the prompt's prefill), the answer is cut into chunks of at least ``k`` tokens that
never end inside a formula (``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``). Each chunk is
synthesised once with our TTS, which gives its synthesis time ``tts`` and its audio length
``spk``. Then, with ``gen_i`` the time of the chunk's last token:

- parallel TTS (the reference's evaluation setting): ``ready_i = gen_i + tts_i``;
- sequential TTS (one synthesis thread, as our session runs): synthesis of chunk i starts
  at ``max(gen_i, ready_{i-1})`` and ``ready_i`` = that + ``tts_i``. (The reference's
  sequential variant, ``gen_i + cumsum(tts)_i``, charges every earlier synthesis even when
  it finished long before; ours is the queue it approximates.)
- ``start_i = max(ready_i, end_{i-1})`` with ``end_{-1} = 0``; ``delay_i = start_i −
  end_{i-1}``; ``end_i = start_i + spk_i``.

Figures: ``delay_to_first`` = delay_0, ``total_delay`` = Σ delay_i, ``total_delay_minus1``
= Σ max(delay_i − 1 s, 0), ``duration_no_delay`` = Σ spk_i.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MIN_CHUNK_TOKENS = 5  # the reference's evaluation chunk size

_MATH_OPEN_CLOSE = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))


@dataclass(frozen=True)
class TimedChunk:
    """One chunk of the answer: its ``text``, ``gen_t`` (s, its last token), ``tokens``."""

    text: str
    gen_t: float
    tokens: int


@dataclass(frozen=True)
class ChunkTiming:
    """A chunk after synthesis: ``tts_s`` (synthesis seconds) and ``spk_s`` (audio seconds)."""

    gen_t: float
    tts_s: float
    spk_s: float


def inside_formula(text: str) -> bool:
    """True when ``text`` ends inside an open formula."""
    i, open_close = 0, None
    while i < len(text):
        if open_close is None:
            for o, c in _MATH_OPEN_CLOSE:
                if text.startswith(o, i):
                    open_close, i = c, i + len(o)
                    break
            else:
                i += 2 if text.startswith("\\$", i) else 1
        elif text.startswith(open_close, i):
            i, open_close = i + len(open_close), None
        else:
            i += 1
    return open_close is not None


def chunk_tokens(tokens: Sequence[tuple[str, float]], k: int = MIN_CHUNK_TOKENS) -> list[TimedChunk]:
    """Group (text, time) writer tokens into chunks of ≥ ``k`` tokens, never split in a
    formula; the remainder is the last chunk. Newlines become spaces (as the reference)."""
    chunks: list[TimedChunk] = []
    text, n, last_t = "", 0, 0.0
    for piece, t in tokens:
        text, n, last_t = text + piece, n + 1, t
        if n >= k and not inside_formula(text):
            chunks.append(TimedChunk(_flat(text), last_t, n))
            text, n = "", 0
    if n:
        chunks.append(TimedChunk(_flat(text), last_t, n))
    return chunks


def _flat(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text)


def listener_delays(chunks: Sequence[ChunkTiming], parallel_tts: bool = True) -> dict:
    """The delay figures of one answer (see the module text). Empty answer: None figures."""
    if not chunks:
        return {"delay_to_first": None, "total_delay": None, "total_delay_minus1": None,
                "duration_no_delay": 0.0, "delays": []}
    delays, end, ready = [], 0.0, 0.0
    for c in chunks:
        ready = c.gen_t + c.tts_s if parallel_tts else max(c.gen_t, ready) + c.tts_s
        start = max(ready, end)
        delays.append(start - end)
        end = start + c.spk_s
    return {"delay_to_first": delays[0], "total_delay": sum(delays),
            "total_delay_minus1": sum(max(d - 1.0, 0.0) for d in delays),
            "duration_no_delay": sum(c.spk_s for c in chunks), "delays": delays}


Synthesize = Callable[[str], tuple[float, float]]  # speakable text -> (tts_s, spk_s)


def piper_synthesizer(tts) -> Synthesize:
    """Time one synthesis of speakable text with a loaded ``PiperTts`` (wall seconds) and
    return its audio length. A text already measured in this run is not synthesised again
    (modes that write the same answer share its measurement; it keeps CPU for decoding)."""
    seen: dict[str, tuple[float, float]] = {}

    def synth(text: str) -> tuple[float, float]:
        if not text.strip():
            return 0.0, 0.0
        if text not in seen:
            t0 = time.perf_counter()
            samples = sum(len(a) for a in tts.synthesize(text))
            seen[text] = (time.perf_counter() - t0, samples / tts.sample_rate)
        return seen[text]
    return synth


def measure(chunks: Sequence[TimedChunk], synth: Synthesize) -> list[ChunkTiming]:
    """Speak each chunk's text (normalised as the session would) through ``synth``."""
    from voice_agent.tts.normalize import normalize

    out = []
    for c in chunks:
        tts_s, spk_s = synth(normalize(c.text))
        out.append(ChunkTiming(c.gen_t, tts_s, spk_s))
    return out
