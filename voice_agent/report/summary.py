"""The markdown summary: what was said, and how long everything took."""

from __future__ import annotations

from typing import Any

# (metrics key, column title, unit): seconds are shown in ms, the unit people think in
TURN_COLUMNS = (
    ("response_latency", "response latency", "ms"),
    ("first_answer_token", "first answer token", "ms"),
    ("delay_to_first", "delay to first", "ms"),
    ("total_delay", "total delay", "ms"),
    ("stall_total", "stall total", "ms"),
    ("stall_max", "stall max", "ms"),
    ("asr_final_latency", "ASR final latency", "ms"),
    ("asr_commit_lag", "ASR commit lag", "ms"),
    ("thought_tokens_while_listening", "thoughts while listening", "tok"),
    ("tts_rtf", "TTS RTF", "x"),
)
NOISE_NOTE = ("> **Note:** the language model was the tiny random-init test model. Its "
              "answers are noise; only the timings mean anything.")


def render_summary(metrics: dict[str, Any], trace_name: str = "") -> str:
    """The summary of ``compute_metrics``'s result as markdown."""
    s = metrics["session"]
    lines = [f"# Session report{': ' + trace_name if trace_name else ''}", ""]
    if metrics.get("incomplete"):
        lines += [f"> **Incomplete:** {metrics['incomplete']}.", ""]
    if metrics.get("noise_model"):
        lines += [NOISE_NOTE, ""]
    models = metrics.get("models") or {}
    if models:
        lines += ["Models: " + ", ".join(f"{k} = `{_model_name(v)}`" for k, v in models.items()),
                  ""]
    lines += [
        f"{s['turns']} turn(s), {s['answered_turns']} answered, {s['interrupted_turns']} "
        f"interrupted, {s['bargeins']} barge-in(s), {s['errors']} error(s); "
        f"{s['duration']:.1f} s of session.", "",
        "## Medians over turns", "",
        "| figure | median |", "|---|---|",
    ]
    for key, title, unit in TURN_COLUMNS:
        lines.append(f"| {title} | {_fmt(s[key], unit)} |")
    for state, ms in s["ms_per_step"].items():
        lines.append(f"| ms per step, {state} ({s['steps'][state]} steps) | {ms:.1f} ms |")
    lines += ["", "## Turns", ""]
    if not metrics["turns"]:
        lines.append("No turn was logged.")
    else:
        lines += _turn_table(metrics["turns"])
        for t in metrics["turns"]:
            lines += ["", f"### Turn {t['turn']}" + _turn_flags(t), "",
                      f"- **User:** {_quote(t['user'])}",
                      f"- **Assistant:** {_quote(t['answer'])}",
                      f"- tokens: {t['think_tokens']} thought, {t['write_tokens']} written; "
                      f"chunks: {t['chunks_ready']} synthesised, {t['chunks_played']} played",
                      "- ms per step: " + (", ".join(f"{k} {v:.1f}" for k, v in
                                                     t["ms_per_step"].items()) or "—")]
    lines += ["", "Times are on the session clock; definitions are in "
              "`voice_agent/report/metrics.py`.", ""]
    return "\n".join(lines)


def _turn_table(turns: list[dict[str, Any]]) -> list[str]:
    head = "| turn | " + " | ".join(title for _, title, _ in TURN_COLUMNS) + " |"
    rule = "|---" * (len(TURN_COLUMNS) + 1) + "|"
    rows = [f"| {t['turn']} | " + " | ".join(_fmt(t[k], u) for k, _, u in TURN_COLUMNS) + " |"
            for t in turns]
    return [head, rule, *rows]


def _turn_flags(t: dict[str, Any]) -> str:
    flags = []
    if t["interrupted"]:
        flags.append(f"interrupted, {t['bargeins']} barge-in(s)")
    if not t["complete"]:
        flags.append("cut off before its end")
    if not t["chunks_played"]:
        flags.append("no answer played")
    return f" ({'; '.join(flags)})" if flags else ""


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value * 1000:.0f} ms"
    if unit == "x":
        return f"{value:.2f}"
    return f"{value:g}"


def _quote(text: str) -> str:
    text = " ".join(str(text or "").split())
    return f"“{text}”" if text else "—"


def _model_name(v: Any) -> str:
    if isinstance(v, dict):
        return str(v.get("name") or v.get("id") or v)
    return str(v)
