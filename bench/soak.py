"""Soak: spoken conversations back to back for N minutes, with a barge-in about every 6 s.

Each conversation is one whole session, as `replay` runs it (VAD, streaming faster-whisper,
the async engine on the tiny Qwen3, chunker, piper, a WAV sink, trace and report files),
with the models loaded once and shared, as a server shares them. The question samples
follow each other so that the user starts speaking again about every 6 s, mostly while
the (noise) answer plays: a barge-in. "Fast mode": the session clock runs ``--speed``
times faster than the wall clock (audio is fed, played and timed on it), so a minute of
wall time holds more conversation; model compute is not sped up.

Every ``--interval`` seconds a sampler records RSS, open file descriptors, OS threads and
the KV arena's occupancy (the curves). RSS is also read at each session's end, and each
session's peak RSS is the kernel's high-water mark, reset when it starts. After the
warm-up (``--warmup``, default a quarter of the run, at most 2 minutes) RSS must grow less
than 5 %, and every event a session emitted must be a line of its trace (events emitted =
lines written).

RSS swings by ~15 % within one session (the report's figure, the WAV, whisper's
windows), so two 10-s samples compare different moments of a session unless they are
taken at the same point of one. Growth is therefore measured at session ends: the RSS at
the end of the last session against the end of the first one after the warm-up
(``rss_growth``, the last line), and the peak of the last four sessions against the peak
of the first four after the warm-up (``peak_growth``). Both must stay under 5 %. The
growth between the 10-s samples right after the warm-up and at the end is reported too
(``sample_growth``).

    python bench/soak.py --minutes 30 [--speed 2] [--png docs/soak.png] [--samples-out F]

Prints a JSON summary, then the last line ``soak: rss growth X.X%, lost lines N``. Exit
code 1 when the run fails a bound.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.audio import SAMPLE_RATE  # noqa: E402
from voice_agent.audio.sources import WavSource  # noqa: E402
from voice_agent.audio.wav import read_wav  # noqa: E402
from voice_agent.config import load_config  # noqa: E402
from voice_agent.memory import (  # noqa: E402
    fix_malloc_thresholds,
    limit_malloc_arenas,
    malloc_stats,
)
from voice_agent.runner import Models, build_decoder, run_session, voice_engine_defaults  # noqa: E402
from voice_agent.trace import SessionClock  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "assets" / "samples"
QUESTIONS = ("capital_of_france.wav", "seven_times_eight.wav", "boiling_point.wav",
             "train_arrival.wav")
RSS_LIMIT = 0.05


class ScaledClock(SessionClock):
    """The session clock, running ``speed`` times faster than the monotonic clock."""

    def __init__(self, speed: float) -> None:
        super().__init__()
        self.speed = float(speed)

    def now(self) -> float:
        return (time.monotonic() - self.start) * self.speed


def conversation(n_questions: int, offset: int, every_s: float = 6.0) -> np.ndarray:
    """Questions whose starts are ``every_s`` apart (at least 2.5 s of silence between),
    then 4 s of silence for the last answer; int16 16 kHz mono."""
    parts = []
    for k in range(n_questions):
        q = read_wav(SAMPLES / QUESTIONS[(offset + k) % len(QUESTIONS)])
        parts.append(q)
        gap = max(every_s - len(q) / SAMPLE_RATE, 2.5) if k < n_questions - 1 else 4.0
        parts.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
    return (np.clip(np.concatenate(parts), -1, 1) * 32767).astype(np.int16)


def os_threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return threading.active_count()


def rss_parts_mb() -> dict:
    """RSS split as the kernel counts it: anonymous (heaps, stacks) and file-backed pages
    (libraries, mapped model files; these grow as new code paths are touched, bounded)."""
    parts = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            parts[line[3:7].lower() + "_mb"] = round(int(line.split()[1]) / 1024, 2)
    return parts


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float | None:
    """The kernel's high-water mark of RSS (VmHWM) since the last ``reset_peak_rss``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def reset_peak_rss() -> None:
    """Start a new high-water mark (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def growth_at_session_ends(ends: list[dict], warmup: float) -> dict:
    """RSS growth measured at the same point of every session (see the module's doc)."""
    after = [e for e in ends if e["t_s"] >= warmup] or ends[-1:]
    first, last = after[0], after[-1]
    k = max(1, min(4, len(after) // 2))
    early = max(e["peak_mb"] for e in after[:k])
    late = max(e["peak_mb"] for e in after[-k:])
    return {"anchor_session": first["session"], "sessions_after_warmup": len(after),
            "end_mb": {"anchor": first["rss_mb"], "last": last["rss_mb"]},
            "peak_mb": {"first": early, "last": late, "sessions_each": k},
            "rss_growth": round((last["rss_mb"] - first["rss_mb"]) / first["rss_mb"], 4),
            "peak_growth": round((late - early) / early, 4),
            # what malloc still holds for someone: grew ~54 MiB a session before the fix
            "malloc_held_mb": {k: round(e.get("malloc_in_use_mb", 0.0)
                                        + e.get("malloc_mmapped_mb", 0.0), 1)
                               for k, e in (("anchor", first), ("last", last))},
            "rss_anon_mb": {k: e.get("anon_mb") for k, e in (("anchor", first), ("last", last))},
            "rss_file_mb": {k: e.get("file_mb") for k, e in (("anchor", first), ("last", last))}}


class Sampler(threading.Thread):
    """Samples the process every ``interval`` s (wall) until stopped."""

    def __init__(self, interval: float, decoder, stats: dict) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.interval, self.decoder, self.stats = interval, decoder, stats
        self.samples: list[dict] = []
        self.t0 = time.monotonic()
        self._halt = threading.Event()

    def sample(self) -> None:
        arena = self.decoder.arena
        self.samples.append({
            "t_s": round(time.monotonic() - self.t0, 1), "rss_mb": round(rss_mb(), 2),
            "open_files": len(os.listdir("/proc/self/fd")), "threads": os_threads(),
            "arena_used": round(arena.used_tokens() / arena.total_capacity, 4),
            "arena_peak": round(self.stats.pop("peak", 0.0), 4),
            "sessions": self.stats["sessions"], "events": self.stats["events"],
            **rss_parts_mb(), **{f"malloc_{k}_mb": v for k, v in malloc_stats().items()}})

    def run(self) -> None:
        self.sample()
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


def plot(samples: list[dict], ends: list[dict], at_ends: dict, warmup_s: float,
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, (a, b, c) = plt.subplots(3, 1, figsize=(8, 7.5), sharex=True)
    a.plot(t, [s["rss_mb"] for s in samples], color="tab:blue", lw=1, label="RSS every 10 s")
    te = [e["t_s"] / 60 for e in ends]
    a.plot(te, [e["peak_mb"] for e in ends], "^", color="tab:red", ms=4, label="session peak")
    a.plot(te, [e["rss_mb"] for e in ends], "o", color="tab:green", ms=4, label="session end")
    if "malloc_in_use_mb" in samples[0]:
        a.plot(t, [s["malloc_in_use_mb"] + s["malloc_mmapped_mb"] for s in samples],
               color="tab:orange", lw=1, label="held by malloc (in use + mmapped)")
    a.axvline(warmup_s / 60, color="grey", ls="--", lw=0.8)
    a.legend(loc="lower right", fontsize=7, ncol=2)
    a.set_ylabel("MiB")
    a.set_title(f"soak: {len(ends)} sessions; growth after warm-up: RSS at session end "
                f"{at_ends['rss_growth'] * 100:.1f}%, session peak "
                f"{at_ends['peak_growth'] * 100:.1f}%", fontsize=10)
    b.plot(t, [100 * s["arena_used"] for s in samples], ".", ms=3, label="at the sample")
    b.plot(t, [100 * s["arena_peak"] for s in samples], color="tab:red", lw=1,
           label="peak since the previous sample")
    b.set_ylabel("KV arena used (%)")
    b.legend(loc="upper right", fontsize=8)
    c.plot(t, [s["open_files"] for s in samples], label="open files")
    c.plot(t, [s["threads"] for s in samples], label="OS threads")
    c.set_ylabel("count")
    c.set_xlabel("wall time (min)")
    c.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def count_lines(path: Path) -> int:
    """Event lines of a trace: not the header, not the closing ``trace.end`` line (the
    trace writes both itself; the session emits every other line)."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    return len(lines) - 1 - sum('"ev": "trace.end"' in line for line in lines[-1:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="wall minutes of conversations")
    p.add_argument("--speed", type=float, default=1.0, help="session clock speed vs wall (fast mode)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--warmup", type=float, default=None, metavar="S",
                   help="wall seconds before the RSS anchor (default: a quarter, at most 120)")
    p.add_argument("--questions", type=int, default=8, help="questions per conversation")
    p.add_argument("--llm", default="tiny")
    p.add_argument("--png", type=Path, default=None, help="write the curves here")
    p.add_argument("--samples-out", type=Path, default=None, help="write the samples as JSON")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's malloc arenas and thresholds as they are (before the fix)")
    p.add_argument("--keep-garbage", action="store_true",
                   help="do not free what each session left in reference cycles (before the fix)")
    args = p.parse_args(argv)
    # what this run's malloc was, so that runs compare (docs/reliability.md, "Soak")
    malloc = {"arenas_limited": False, "thresholds_fixed": False,
              "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "")}
    if not args.default_malloc:
        malloc["arenas_limited"] = limit_malloc_arenas()  # as the CLI does (memory.py)
        malloc["thresholds_fixed"] = fix_malloc_thresholds()

    import torch

    from voice_agent.asr.whisper import load_whisper
    from voice_agent.tts.piper_tts import PiperTts

    torch.set_num_threads(1)
    config = load_config(session={"mode": "async", "end_wait_s": 20.0},
                         engine={**voice_engine_defaults(args.llm), "max_answer": 48})
    decoder = build_decoder("async", args.llm, config, SessionClock())
    whisper = load_whisper(None, 1)
    tts = PiperTts(config.tts)
    duration = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else min(120.0, duration / 4)

    stats = {"sessions": 0, "events": 0, "peak": 0.0}
    totals = {"emitted": 0, "written": 0, "lost": 0, "bargeins": 0, "turns": 0, "errors": 0,
              "session_s": 0.0, "failed_sessions": 0}
    sampler = Sampler(args.interval, decoder, stats)
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    ends: list[dict] = []  # RSS at each session's end, and its peak
    sampler.start()
    try:
        k = 0
        while time.monotonic() - sampler.t0 < duration:
            emitted = [0]
            pcm = conversation(args.questions, k)

            def view(ev, emitted=emitted) -> None:
                emitted[0] += 1
                stats["events"] += 1
                arena = decoder.arena
                stats["peak"] = max(stats.get("peak", 0.0), arena.used_tokens() / arena.total_capacity)
                if ev.EV == "bargein":
                    totals["bargeins"] += 1
                elif ev.EV == "turn.end":
                    totals["turns"] += 1
                elif ev.EV == "error":
                    totals["errors"] += 1

            out = root / f"s{k:04d}"
            clock = ScaledClock(args.speed)
            reset_peak_rss()
            result = run_session(
                source_factory=lambda c, pcm=pcm: WavSource.from_pcm(pcm, c, pad_silence_s=1.0),
                config=config, models=Models(llm=args.llm), out_dir=out, view=view,
                decoder=decoder, whisper=whisper, tts=tts, clock=clock,
                release_memory=not args.keep_garbage)
            written = count_lines(out / "trace.jsonl")
            totals["emitted"] += emitted[0]
            totals["written"] += written
            totals["lost"] += max(0, emitted[0] - written)
            totals["session_s"] += len(pcm) / SAMPLE_RATE + 1.0
            totals["failed_sessions"] += int(result.exit_code != 0)
            stats["sessions"] += 1
            ends.append({"session": k, "t_s": round(time.monotonic() - sampler.t0, 1),
                         "rss_mb": round(rss_mb(), 2),
                         "peak_mb": round(peak_rss_mb() or rss_mb(), 2), **rss_parts_mb(),
                         **{f"malloc_{k}_mb": v for k, v in malloc_stats().items()}})
            shutil.rmtree(out, ignore_errors=True)
            k += 1
    finally:
        sampler.stop()
        shutil.rmtree(root, ignore_errors=True)

    samples = sampler.samples
    anchor = next((s for s in samples if s["t_s"] >= warmup), samples[0])
    last = samples[-1]
    sample_growth = (last["rss_mb"] - anchor["rss_mb"]) / anchor["rss_mb"]
    after = [s for s in samples if s["t_s"] >= anchor["t_s"]]
    at_ends = growth_at_session_ends(ends, warmup)
    growth = at_ends["rss_growth"]
    summary = {
        "minutes": round(samples[-1]["t_s"] / 60, 2), "speed": args.speed,
        "sessions": stats["sessions"], "conversation_minutes": round(totals["session_s"] / 60, 1),
        "turns": totals["turns"], "bargeins": totals["bargeins"],
        "bargeins_per_minute": round(totals["bargeins"] / max(totals["session_s"] / 60, 1e-9), 2),
        "errors": totals["errors"], "failed_sessions": totals["failed_sessions"],
        "events_emitted": totals["emitted"], "lines_written": totals["written"],
        "lost_lines": totals["lost"], "warmup_s": warmup,
        "rss_mb": {"start": samples[0]["rss_mb"], "anchor": anchor["rss_mb"],
                   "end": last["rss_mb"], "max_after_warmup": max(s["rss_mb"] for s in after)},
        "rss_growth": growth, "peak_growth": at_ends["peak_growth"],
        "sample_growth": round(sample_growth, 4), "at_session_ends": at_ends,
        "open_files": {"start": samples[0]["open_files"], "anchor": anchor["open_files"],
                       "end": last["open_files"],
                       "max": max(s["open_files"] for s in samples)},
        "threads": {"start": samples[0]["threads"], "anchor": anchor["threads"],
                    "end": last["threads"],
                    "max": max(s["threads"] for s in samples)},
        "arena_peak": max(s["arena_peak"] for s in samples),
        "samples": len(samples), "malloc": malloc,
    }
    if args.samples_out:
        args.samples_out.parent.mkdir(parents=True, exist_ok=True)
        args.samples_out.write_text(json.dumps({"summary": summary, "samples": samples,
                                                "session_ends": ends}, indent=1))
    if args.png:
        plot(samples, ends, at_ends, warmup, args.png)
    print(json.dumps(summary))
    print(f"soak: rss growth {growth * 100:.1f}%, lost lines {totals['lost']}")
    ok = (growth < RSS_LIMIT and at_ends["peak_growth"] < RSS_LIMIT and totals["lost"] == 0
          and totals["failed_sessions"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    from voice_agent.errors import VoiceAgentError

    try:
        sys.exit(main())
    except VoiceAgentError as e:  # e.g. a model file that fails its check: one line
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
