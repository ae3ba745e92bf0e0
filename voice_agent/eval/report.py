"""Results files of an evaluation: results.jsonl, summary.md and two plots.

``summary.md`` holds the accuracy and the medians per set and mode. Everything in it that
is not a timing depends only on the predictions, so two runs of the same greedy command
give summaries that differ only in timings.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FIGURES = (  # (results key, summary key)
    ("first_answer_token_s", "median_first_answer_token_s"),
    ("delay_to_first", "median_delay_to_first_s"),
    ("total_delay", "median_total_delay_s"),
    ("total_delay_minus1", "median_total_delay_minus1_s"),
    ("first_answer_step", "median_first_answer_step"),
)
SPOKEN_FIGURES = (
    ("response_latency_s", "median_response_latency_s"),
    ("live_delay_to_first", "median_live_delay_to_first_s"),
    ("live_total_delay", "median_live_total_delay_s"),
)


def median(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 4) if vals else None


def summarize(rows: Sequence[dict[str, Any]], spoken: bool) -> dict[str, dict[str, Any]]:
    """Per mode: n, accuracy and the medians (the command's ``--json`` figures)."""
    out: dict[str, dict[str, Any]] = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        rs = [r for r in rows if r["mode"] == mode]
        fig = {"n": len(rs), "accuracy": round(sum(r["correct"] for r in rs) / len(rs), 4)}
        for key, name in FIGURES + (SPOKEN_FIGURES if spoken else ()):
            fig[name] = median([r.get(key) for r in rs])
        if spoken:
            fig.update(by_hearing(rs))
        out[mode] = fig
    return out


def by_hearing(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Spoken accuracy where the recogniser heard the question word for word and where it
    did not (``transcript_wer``, after wer.py's normalisation): how much of a spoken set's
    gap to typed text is hearing rather than thinking. None where rows lack the figure
    (spoken runs before 6 Dec 2026)."""
    scored = [r for r in rows if r.get("transcript_wer") is not None]
    exact = [r for r in scored if r["transcript_wer"] == 0]
    misheard = [r for r in scored if r["transcript_wer"] > 0]

    def accuracy(rs: list[dict[str, Any]]) -> float | None:
        return round(sum(r["correct"] for r in rs) / len(rs), 4) if rs else None

    return {"heard_exactly": len(exact) if scored else None,
            "accuracy_heard_exactly": accuracy(exact), "accuracy_misheard": accuracy(misheard)}


def write_results(out: Path, rows: Sequence[dict[str, Any]]) -> None:
    with open(out / "results.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_summary(out: Path, rows: Sequence[dict[str, Any]], spoken: bool,
                  meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """summary.md (a table per set) and the plots; returns the per-mode figures."""
    lines = [f"# Evaluation: {meta['data']}", "",
             f"- model: `{meta['llm']}`, {'spoken (whole session, real time)' if spoken else 'text'}, "
             f"greedy, seed {meta['seed']}, budgets: {meta['budgets']}",
             f"- run time: {meta['wall_s']:.0f} s", ""]
    cols = ["mode", "n", "accuracy", "first answer token (s)", "delay_to_first (s)",
            "total_delay (s)", "total_delay_minus1 (s)", "first answer step"]
    if spoken:
        cols += ["response latency, live (s)", "delay_to_first, live (s)", "total_delay, live (s)",
                 "heard word for word", "accuracy: heard / misheard"]
    for data_set in dict.fromkeys(r["set"] for r in rows):
        rs = [r for r in rows if r["set"] == data_set]
        lines += [f"## {data_set}", "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * len(cols)]
        for mode, fig in summarize(rs, spoken).items():
            vals = [mode, fig["n"], f"{fig['accuracy']:.3f}"]
            vals += [_fmt(fig[name]) for _, name in FIGURES + (SPOKEN_FIGURES if spoken else ())]
            if spoken:
                vals += ["n/a" if fig["heard_exactly"] is None else f"{fig['heard_exactly']} / {fig['n']}",
                         f"{_fmt(fig['accuracy_heard_exactly'])} / {_fmt(fig['accuracy_misheard'])}"]
            lines.append("| " + " | ".join(str(v) for v in vals) + " |")
        lines.append("")
    lines += ["*first answer step*: decoder steps (one forward pass each) before the first "
              "answer token, which CPU load does not change. ",
              "Medians over problems. Delays (post-hoc model, AsyncReasoning §3): chunks of "
              "≥ 5 writer tokens, never split in a formula, each synthesised by our piper "
              "voice; parallel TTS. Text mode times from before the prompt prefill; spoken "
              "mode from the end of the question's speech. *live*: the session's own report. "
              "*heard word for word*: questions whose transcript has no word error "
              "(case, punctuation and digits aside).",
              ""]
    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    figures = summarize(rows, spoken)
    plot(out, rows, figures)
    return figures


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def plot(out: Path, rows: Sequence[dict[str, Any]], figures: dict[str, dict[str, Any]]) -> None:
    """accuracy_vs_delay.png (one point per mode) and delay_cdf.png (total delay CDFs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for mode, f in figures.items():
        if f["median_total_delay_s"] is not None:
            ax.scatter(f["median_total_delay_s"], f["accuracy"], s=40)
            ax.annotate(mode, (f["median_total_delay_s"], f["accuracy"]),
                        textcoords="offset points", xytext=(5, 4))
    ax.set_xlabel("median total delay (s)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("accuracy against the delay a listener hears")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_delay.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for mode in figures:
        vals = sorted(r["total_delay"] for r in rows if r["mode"] == mode
                      and r.get("total_delay") is not None)
        if vals:
            ax.step(vals, [(i + 1) / len(vals) for i in range(len(vals))], where="post", label=mode)
    ax.set_xlabel("total delay (s)")
    ax.set_ylabel("fraction of problems")
    ax.set_title("CDF of total delay")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # rows without delays (a failed run) draw no curve
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "delay_cdf.png", dpi=110)
    plt.close(fig)
