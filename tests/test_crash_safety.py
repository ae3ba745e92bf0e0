"""Crash safety: ``kill -9`` mid-session leaves a trace that is valid JSONL up to its last
event (no torn line), and ``report`` makes a report from it, marked incomplete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from voice_agent.trace import TraceWriter

REPO = Path(__file__).resolve().parent.parent

# Writes big events as fast as it can until killed; each line is ~60 kB, far over any
# stdio buffer, so a writer that split lines over system calls would tear one.
_WRITER = """
import sys
from voice_agent.trace import TraceWriter
w = TraceWriter(sys.argv[1], config={"audio_clock_offset": 0.0})
i = 0
print("ready", flush=True)
while True:
    i += 1
    w.write({"t": i * 1e-3, "ev": "error", "where": "test", "message": "x" * 60000 + str(i)})
"""


def _lines(path: Path, torn_ok: bool = False) -> list[dict]:
    """Every line as JSON; with ``torn_ok`` a last line without its newline (cut by the
    kill inside a write) is left out, as readers do."""
    raw = path.read_bytes()
    if not raw.endswith(b"\n"):
        assert torn_ok, f"torn last line: ...{raw[-80:]!r}"
        raw = raw[: raw.rfind(b"\n") + 1]
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def test_kill_9_leaves_whole_lines_up_to_the_last_event(tmp_path):
    """A kill can cut only the line being written (Linux checks for a fatal signal between
    the pages of one write; 60 kB lines make that likely): every line before it is whole,
    and the report, marked incomplete, says the last one was left out."""
    from voice_agent.report.files import write_report

    path = tmp_path / "trace.jsonl"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=REPO,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        recs = _lines(path, torn_ok=True)
        assert recs[0]["ev"] == "header" and len(recs) > 3
        assert [r["t"] for r in recs[1:]] == sorted(r["t"] for r in recs[1:])
    torn = not path.read_bytes().endswith(b"\n")
    metrics = write_report(path, tmp_path / "report")
    assert metrics["complete"] is False
    assert ("cut mid-write" in metrics["incomplete"]) == torn


def test_a_cut_last_line_is_left_out_and_named(tmp_path):
    from voice_agent.report.files import write_report

    path = tmp_path / "trace.jsonl"
    w = TraceWriter(path, config={"audio_clock_offset": 0.0})
    w.write({"t": 0.5, "ev": "turn.start", "turn": 1})
    with open(path, "ab") as f:  # what a kill inside the next write leaves
        f.write(b'{"t": 0.6, "ev": "llm.wri')
    metrics = write_report(path, tmp_path / "report")
    assert metrics["complete"] is False and "cut mid-write" in metrics["incomplete"]
    assert metrics["session"]["turns"] == 1


def test_a_closed_trace_ends_with_trace_end_and_counts_its_lines(tmp_path):
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path, config={"audio_clock_offset": 0.0}) as w:
        for i in range(5):
            w.write({"t": 0.1 * i, "ev": "turn.start", "turn": i + 1})
    recs = _lines(path)
    assert recs[-1] == {"t": 0.4, "ev": "trace.end", "lines": 5}


@pytest.mark.heavy
def test_kill_9_mid_session_then_report_marks_it_incomplete(tmp_path):
    """A real replay session (tiny LLM, real ASR and TTS) killed with SIGKILL mid-answer."""
    out = tmp_path / "run"
    trace = out / "trace.jsonl"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "run_assistant.py", "replay", str(REPO / "assets/samples/capital_of_france.wav"),
         "--llm", "tiny", "--quiet", "--out", str(out)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (trace.exists() and b'"llm.write"' in trace.read_bytes()):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no answer within 240 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    recs = _lines(trace, torn_ok=True)
    assert recs[0]["ev"] == "header" and recs[-1]["ev"] != "trace.end"
    assert any(r["ev"] == "llm.write" for r in recs)

    from voice_agent.cli import main

    report = tmp_path / "report"
    assert main(["report", str(trace), "--out", str(report), "--json"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["complete"] is False and "cut short" in metrics["incomplete"]
    assert "Incomplete" in (report / "summary.md").read_text()
    assert (report / "timeline.png").stat().st_size > 0


def test_text_that_was_not_utf8_is_escaped_not_lost(tmp_path):
    path = tmp_path / "trace.jsonl"
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")
    with TraceWriter(path, config={"audio_clock_offset": 0.0}) as w:
        w.write({"t": 0.1, "ev": "error", "where": "asr", "message": bad})
    recs = _lines(path)
    assert recs[1]["message"] == bad and recs[-1]["ev"] == "trace.end"
