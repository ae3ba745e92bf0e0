"""The timeline picture: one swim lane per component, on the session clock.

Lanes, top to bottom: user speech (VAD spans at their true audio times, the input level,
ends of speech), ASR (partials faint, commits labelled with their words, finals), thinker
and writer (tokens per second), TTS (synthesis spans) and playback (what the user heard).
Turns are shaded; barge-ins are red dashed lines across every lane.

matplotlib is imported inside ``draw_timeline`` and drives the Agg canvas directly, without
pyplot's global state, so it works headless and from any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voice_agent.report.turns import Record, audio_clock_offset, audio_to_session

LANES = ("user speech", "ASR", "thinker", "writer", "TTS synth", "playback")
COLORS = {"user": "#2e7d32", "asr": "#1565c0", "think": "#8e24aa", "write": "#ef6c00",
          "tts": "#00838f", "play": "#37474f", "barge": "#d32f2f"}
FONT = 7  # points; label fitting below assumes this size
CHAR_IN = FONT * 0.6 / 72  # average glyph width in inches, for fitting labels
DPI = 100


def draw_timeline(header: Record, events: list[Record], path: str | Path, *,
                  title: str = "", turns: list[dict[str, Any]] | None = None) -> Path:
    """Draw the session's timeline into a PNG at ``path`` and return the path.

    Args:
        header, events: the trace, as ``read_trace`` returns it.
        path: the PNG to write.
        title: a line above the plot.
        turns: ``compute_metrics(...)["turns"]``; when given, each response's latency is
            drawn as an arrow and each stall between chunks is shaded in the playback lane.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    offset = audio_clock_offset(header)
    t_max = _t_max(events, offset)
    # about 0.8 in per second: a 20 s session is 20 in (2000 px) wide; long ones get denser
    width_in = min(max(4.0 + 0.8 * t_max, 12.0), 30.0)
    fig = Figure(figsize=(width_in, 6.6), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.085, 0.09, 0.895, 0.83))
    ax.set_xlim(0.0, t_max)
    ax.set_ylim(0.0, len(LANES) + 0.5)
    data_per_in = t_max / (width_in * 0.895)
    lane = _Lanes(ax, data_per_in)

    _draw_turns(ax, events)
    _draw_user(lane, events, offset)
    _draw_turn_decisions(lane, events)
    _draw_asr(lane, events)
    token_labels = _draw_tokens(lane, events, t_max)
    _draw_tts(lane, events)
    _draw_playback(lane, events)
    _draw_delays(lane, turns or [])
    _draw_bargeins(ax, events)

    labels = [name + token_labels.get(name, "") for name in LANES]
    ax.set_yticks([lane.y(name) + 0.5 for name in LANES], labels, fontsize=9)
    for y in range(1, len(LANES)):
        ax.axhline(y, color="#cfd8dc", lw=0.6)
    ax.set_xlabel("session time (s)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    ax.tick_params(axis="y", length=0)
    ax.xaxis.set_major_locator(_second_locator(t_max))
    ax.grid(axis="x", color="#eceff1", lw=0.6)
    ax.set_axisbelow(True)
    fig.suptitle(title, fontsize=10, x=0.085, ha="left", y=0.985)
    out = Path(path)
    fig.savefig(out, dpi=DPI)
    return out


class _Lanes:
    """Lane geometry, and fitting text labels into the space they have."""

    def __init__(self, ax: Any, data_per_in: float) -> None:
        self.ax = ax
        self.data_per_in = data_per_in

    def y(self, name: str) -> float:
        return float(len(LANES) - 1 - LANES.index(name))

    def text_width(self, text: str) -> float:
        return len(text) * CHAR_IN * self.data_per_in

    def fit(self, text: str, width: float) -> str:
        """The longest prefix of text (with an ellipsis) that fits in width data units."""
        n = int(width / (CHAR_IN * self.data_per_in))
        if n >= len(text):
            return text
        return text[: n - 1] + "…" if n >= 4 else ""


def _t_max(events: list[Record], offset: float) -> float:
    t = max((float(e["t"]) for e in events), default=1.0)
    for e in events:
        if e.get("ev") in ("vad.start", "vad.end") and isinstance(e.get("audio_t"), (int, float)):
            t = max(t, audio_to_session(e["audio_t"], offset))
    return max(t * 1.02 + 0.1, 1.0)


def _second_locator(t_max: float) -> Any:
    from matplotlib.ticker import MultipleLocator

    for step in (0.5, 1, 2, 5, 10, 30, 60, 120, 300):
        if t_max / step <= 40:
            return MultipleLocator(step)
    return MultipleLocator(600)


def _draw_turns(ax: Any, events: list[Record]) -> None:
    starts = {e.get("turn", 0): float(e["t"]) for e in events if e.get("ev") == "turn.start"}
    ends = {e.get("turn", 0): float(e["t"]) for e in events if e.get("ev") == "turn.end"}
    last = max((float(e["t"]) for e in events), default=0.0)
    top = len(LANES)
    for i, (tid, t0) in enumerate(sorted(starts.items(), key=lambda kv: kv[1])):
        t1 = ends.get(tid, last)
        ax.axvspan(t0, t1, color="#fff8e1" if i % 2 == 0 else "#e3f2fd", zorder=0, lw=0)
        ax.text(t0, top + 0.08, f" turn {tid}" + ("" if tid in ends else " (cut off)"),
                fontsize=8, va="bottom", ha="left", color="#5d4037")


def _draw_user(lane: _Lanes, events: list[Record], offset: float) -> None:
    y, ax = lane.y("user speech"), lane.ax
    open_start: float | None = None
    for e in events:
        if e.get("ev") == "vad.start":
            start = audio_to_session(e.get("audio_t", e["t"]), offset)
            if open_start is not None:  # its end was never logged: show it faint
                ax.broken_barh([(open_start, start - open_start)], (y + 0.3, 0.4),
                               color=COLORS["user"], alpha=0.3)
            open_start = start
        elif e.get("ev") == "vad.end":
            end = audio_to_session(e.get("audio_t", e["t"]), offset)
            start = end if open_start is None else open_start
            ax.broken_barh([(start, end - start)], (y + 0.3, 0.4), color=COLORS["user"],
                           alpha=0.75)
            # the hangover: voiced audio ended at `end`, the VAD said so at `t`
            ax.plot([end, float(e["t"])], [y + 0.5, y + 0.5], color=COLORS["user"], lw=1,
                    ls=":")
            open_start = None
    if open_start is not None:
        ax.broken_barh([(open_start, ax.get_xlim()[1] - open_start)], (y + 0.3, 0.4),
                       color=COLORS["user"], alpha=0.35)
    levels = [(audio_to_session(e.get("audio_t", e["t"]), offset), float(e.get("rms") or 0))
              for e in events if e.get("ev") == "audio.in"]
    peak = max((r for _, r in levels), default=0.0)
    if peak > 0:
        ax.plot([t for t, _ in levels], [y + 0.08 + 0.2 * r / peak for _, r in levels],
                color=COLORS["user"], lw=0.7, alpha=0.6)
    free_from = float("-inf")
    for e in events:
        if e.get("ev") == "asr.final" and isinstance(e.get("speech_end"), (int, float)):
            t = audio_to_session(e["speech_end"], offset)
            ax.plot([t, t], [y + 0.15, y + 0.85], color="black", lw=1.2)
            label = " end of speech" if t >= free_from else ""
            ax.text(t, y + 0.86, label, fontsize=FONT, va="bottom")
            free_from = t + lane.text_width(" end of speech  ") if label else free_from


def _draw_turn_decisions(lane: _Lanes, events: list[Record]) -> None:
    """Each end-of-turn decision on the user lane, when it was made: a filled triangle
    ends the turn, a hollow one keeps listening; the model's P(complete) beside it, and
    "text" or "unsure" when the transcript check or an unsure verdict kept listening, and
    "question" when the words' question mark ended a turn the model heard unfinished."""
    y, ax = lane.y("user speech"), lane.ax
    for e in events:
        if e.get("ev") != "turn.decision":
            continue
        t, complete, p = float(e["t"]), bool(e.get("complete")), e.get("probability")
        ax.plot([t], [y + 0.22], marker="^", ms=5, ls="", color=COLORS["user"],
                markerfacecolor=COLORS["user"] if complete else "white")
        by = str(e.get("by", ""))
        label = f" {p:.2f}" if isinstance(p, (int, float)) else f" {by}"
        if by in ("text", "unsure", "question"):  # the words or a coin toss overrule the model
            label += f" {by}"
        ax.text(t, y + 0.02, label, fontsize=FONT - 1, va="bottom", color=COLORS["user"])


def _draw_asr(lane: _Lanes, events: list[Record]) -> None:
    y, ax = lane.y("ASR"), lane.ax
    partial_t = [float(e["t"]) for e in events if e.get("ev") == "asr.partial"]
    ax.vlines(partial_t, y + 0.1, y + 0.3, color="#90a4ae", lw=0.8, alpha=0.6)
    heights = (0.38, 0.56, 0.74)
    free_from = [float("-inf")] * len(heights)  # where each label row is free again
    for e in events:
        if e.get("ev") != "asr.commit":
            continue
        t = float(e["t"])
        ax.vlines([t], y + 0.1, y + 0.36, color=COLORS["asr"], lw=1.4)
        text = str(e.get("text") or "").strip()
        row = next((i for i, f in enumerate(free_from) if f <= t), None)
        if text and row is not None:
            label = text if len(text) <= 40 else text[:39] + "…"
            ax.text(t, y + heights[row], label, fontsize=FONT, color=COLORS["asr"],
                    va="bottom", ha="left")
            free_from[row] = t + lane.text_width(label + " ")
    for e in events:
        if e.get("ev") == "asr.final":
            t = float(e["t"])
            ax.plot([t], [y + 0.2], marker="D", color=COLORS["asr"], ms=6)
            ax.text(t, y + 0.03, " final", fontsize=FONT, color=COLORS["asr"], va="bottom")


def _draw_tokens(lane: _Lanes, events: list[Record], t_max: float) -> dict[str, str]:
    """Token rates of thinker and writer on one shared scale; returns lane label suffixes."""
    import numpy as np

    # tokens per second in a sliding window: wide enough to smooth the step rhythm out,
    # narrow enough to show pauses (the thinker waiting for words, the writer for a "yes")
    window = max(0.3, t_max / 120)
    grid = np.arange(0.0, t_max + window / 8, window / 8)
    series = {}
    for ev, name in (("llm.think", "thinker"), ("llm.write", "writer")):
        times = np.sort([float(e["t"]) for e in events if e.get("ev") == ev])
        inside = (np.searchsorted(times, grid + window / 2, side="right")
                  - np.searchsorted(times, grid - window / 2, side="left"))
        series[name] = (inside / window, len(times))
    peak = max((float(c.max()) for c, _ in series.values() if len(c)), default=0.0)
    labels = {}
    for name, color in (("thinker", COLORS["think"]), ("writer", COLORS["write"])):
        y = lane.y(name)
        rate, n = series[name]
        if peak > 0 and n:
            lane.ax.fill_between(grid, y + 0.08, y + 0.08 + 0.8 * rate / peak, color=color,
                                 alpha=0.8, lw=0)
        labels[name] = f"\n{n} tokens"
    if peak > 0:
        labels["writer"] += f"\n(full height\n= {peak:.0f} tok/s)"
    y = lane.y("writer")
    for e in events:
        if e.get("ev") == "llm.control":
            yes = bool(e.get("decision"))
            lane.ax.plot([float(e["t"])], [y + 0.92], marker="v", ms=4, ls="",
                         color="#2e7d32" if yes else "#9e9e9e")
    return labels


def _draw_tts(lane: _Lanes, events: list[Record]) -> None:
    y, ax = lane.y("TTS synth"), lane.ax
    free_from = float("-inf")  # labels never overlap: a crowded one is left out
    for e in events:
        if e.get("ev") != "tts.chunk_ready":
            continue
        t, synth = float(e["t"]), float(e.get("synth_s") or 0.0)
        ax.broken_barh([(t - synth, synth)], (y + 0.25, 0.5), color=COLORS["tts"], alpha=0.8)
        ax.plot([t], [y + 0.5], marker="|", ms=10, color="black")
        label = f"#{e.get('index', '?')}"
        if t - synth >= free_from:
            ax.text(t - synth, y + 0.78, label, fontsize=FONT, va="bottom", color=COLORS["tts"])
            free_from = t - synth + lane.text_width(label + " ")


def _draw_playback(lane: _Lanes, events: list[Record]) -> None:
    y, ax = lane.y("playback"), lane.ax
    texts = {(e.get("turn"), e.get("index")): str(e.get("text") or "")
             for e in events if e.get("ev") == "tts.chunk_ready"}
    open_plays: dict[tuple[Any, Any], float] = {}
    for e in events:
        key = (e.get("turn"), e.get("index"))
        if e.get("ev") == "audio.play_start":
            open_plays[key] = float(e["t"])
        elif e.get("ev") == "audio.play_end" and key in open_plays:
            start, end = open_plays.pop(key), float(e["t"])
            cut = bool(e.get("interrupted"))
            ax.broken_barh([(start, end - start)], (y + 0.35, 0.55), facecolor=COLORS["play"],
                           alpha=0.85 if not cut else 0.45, edgecolor=COLORS["barge"]
                           if cut else COLORS["play"], hatch="//" if cut else None, lw=0.8)
            label = lane.fit(" " + texts.get(key, "").strip(), end - start)
            ax.text(start, y + 0.625, label, fontsize=FONT, va="center", ha="left",
                    color="white")
    xmax = ax.get_xlim()[1]
    for start in open_plays.values():  # never ended: the trace was cut off while playing
        ax.broken_barh([(start, xmax - start)], (y + 0.35, 0.55), facecolor=COLORS["play"],
                       alpha=0.3)


def _draw_delays(lane: _Lanes, turns: list[dict[str, Any]]) -> None:
    """Response latency as an arrow from the end of speech; stalls shaded red."""
    y, ax = lane.y("playback"), lane.ax
    for turn in turns:
        prev_end = None
        for p in turn.get("playback", []):
            delay = p.get("delay")
            if delay is not None and p["first"] and delay > 0:
                t0 = p["start"] - delay
                ax.annotate("", xy=(p["start"], y + 0.17), xytext=(t0, y + 0.17),
                            arrowprops={"arrowstyle": "->", "color": "black", "lw": 1})
                ax.text(t0, y + 0.2, lane.fit(f" {delay * 1000:.0f} ms", delay),
                        fontsize=FONT, va="bottom", ha="left")
            elif delay and prev_end is not None:
                ax.axvspan(prev_end, p["start"], ymin=0, ymax=0.9 / (len(LANES) + 0.5),
                           color=COLORS["barge"], alpha=0.25, lw=0)
                ax.text(prev_end, y + 0.05, lane.fit(f"{delay * 1000:.0f} ms", delay),
                        fontsize=FONT - 1, va="bottom", color=COLORS["barge"])
            prev_end = p["end"]


def _draw_bargeins(ax: Any, events: list[Record]) -> None:
    for e in events:
        if e.get("ev") == "bargein":
            t = float(e["t"])
            ax.axvline(t, color=COLORS["barge"], ls="--", lw=1.2, zorder=5)
            ax.text(t, len(LANES) + 0.26, " barge-in", fontsize=8, color=COLORS["barge"],
                    va="bottom")
