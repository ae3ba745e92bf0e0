"""`live` for real: PortAudio → ALSA `pulse` → a PulseAudio user daemon with a pipe-fed
microphone and a null-sink speaker whose monitor is recorded (tests/pulse_rig.py).

One session: a spoken question is answered (answer audio on the speaker after the
question), a second question spoken over the answer barges in (the speaker goes quiet while
the user speaks), then the microphone stalls (delivers no frames at all) and SIGINT still
ends the session with the report written. Audio spoken before the session listened never
arrives in a burst.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import pulse_rig  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "assets" / "samples"

pytestmark = [pytest.mark.heavy,
              pytest.mark.skipif(pulse_rig.missing() is not None,
                                 reason=f"virtual sound card: {pulse_rig.missing()}")]


def _speech(name: str) -> np.ndarray:
    from voice_agent.audio.wav import read_wav, to_int16

    return to_int16(read_wav(SAMPLES / name, pulse_rig.RATE))


def _events(trace: Path) -> list[dict]:
    if not trace.exists():
        return []
    out = []
    for line in trace.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break  # a line being written
    return out


def _wait(what: str, cond, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"live exited ({proc.returncode}) waiting for {what}:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


def test_live_answers_through_pulseaudio_barges_in_and_stops_on_a_stalled_mic(tmp_path):
    card = pulse_rig.SoundCard(tmp_path / "card")
    card.start()
    out, log = tmp_path / "run", tmp_path / "live.log"
    proc = subprocess.Popen(
        [sys.executable, "run_assistant.py", "live", "--llm", "tiny", "--input-device", "pulse",
         "--output-device", "pulse", "--headphones", "--quiet", "--json", "--out", str(out),
         "--set", "session.end_wait_s=5"],
        cwd=REPO, env=card.env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    trace = out / "trace.jsonl"
    try:
        # Ready: the session reads the microphone (its first second of audio is traced).
        _wait("microphone audio", lambda: any(e["ev"] == "audio.in" for e in _events(trace)),
              180, proc, log)
        time.sleep(0.5)

        # 1. A spoken question is answered: answer audio on the speaker after it.
        q_end = card.mic.say(_speech("capital_of_france.wav"))
        _wait("answer audio", lambda: card.loud_spans(since=q_end - 0.5), 90, proc, log)
        answer_start = card.loud_spans(since=q_end - 0.5)[0][0]
        assert answer_start > card.mic.said[0][0] + 1.0  # after the question, not an echo of it

        # 2. A barge-in through the mic while the answer plays stops it.
        # Speak over words already sounding, not over a pause or the answer's first click.
        _wait("the answer playing", card.loud_for, 60, proc, log)
        barge = _speech("seven_times_eight.wav")
        b_end = card.mic.say(barge)
        _wait("a barge-in", lambda: any(e["ev"] == "bargein" for e in _events(trace)), 30, proc, log)
        time.sleep(max(0.0, b_end - time.monotonic()) + 0.3)
        b_start = card.mic.said[1][0]
        playing = [s for s in card.loud_spans(since=answer_start - 0.1)
                   if s[0] <= b_start + 0.2 and s[1] >= b_start]
        assert playing, ("the answer was no longer playing when the user spoke over it: "
                         f"{[(round(a - b_start, 2), round(b - b_start, 2)) for a, b in card.loud_spans()]}")
        stopped_after = playing[-1][1] - b_start
        assert stopped_after < 2.0, f"the answer went on {stopped_after:.2f} s over the user"

        # 3. The microphone stalls: no frames at all. SIGINT still ends the session.
        time.sleep(2.0)
        card.mic.stall()
        time.sleep(1.5)
        t_sig, t_sig_wall = time.monotonic(), time.time()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(120)
        stop_s = time.monotonic() - t_sig
    finally:
        if proc.poll() is None:
            proc.kill()
        card.stop()
    text = log.read_text()
    assert rc == 130, text[-2000:]
    for name in ("trace.jsonl", "metrics.json", "summary.md"):
        assert (out / name).exists(), f"{name} missing after SIGINT; took {stop_s:.1f} s"
    session_stop_s = trace.stat().st_mtime - t_sig_wall  # the trace closes when the session ends
    events = _events(trace)
    assert len(events) == len(trace.read_text().splitlines())  # every line whole JSON
    # No burst: audio time and arrival time advance together (1 s of audio.in spacing).
    ins = [e for e in events if e["ev"] == "audio.in"]
    lag = [e["t"] - e["audio_t"] for e in ins]
    assert len(ins) >= 5 and max(lag) - min(lag) < 1.0, lag
    print(f"\nlive via PulseAudio: answer audio {answer_start - q_end:+.2f} s after the question's "
          f"end; barge-in: audio stopped {stopped_after:.2f} s after the user began; session ended {session_stop_s:.1f} s and the process {stop_s:.1f} s after SIGINT (report included); audio.in lag spread "
          f"{max(lag) - min(lag):.3f} s")
