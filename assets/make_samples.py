#!/usr/bin/env python3
"""Regenerate the sample questions in assets/samples/ (16 kHz mono WAV + transcripts.json).

They are synthesised with the embedded piper voice at a few speaking rates, with a short
lead-in and tail of silence, as a person would leave before and after a question.
Run with `make samples`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.audio import SAMPLE_RATE  # noqa: E402
from voice_agent.audio.wav import resample, write_wav  # noqa: E402
from voice_agent.models import resolve_model  # noqa: E402

OUT = Path(__file__).resolve().parent / "samples"
# name → (text, length_scale: >1 speaks slower)
QUESTIONS = {
    "capital_of_france.wav": ("What is the capital of France?", 1.0),
    "seven_times_eight.wav": ("What is seven times eight, and how do you know?", 1.1),
    "boiling_point.wav": ("At what temperature does water boil at sea level?", 0.95),
    "train_arrival.wav": ("If a train leaves at three o'clock and travels for ninety minutes, "
                          "when does it arrive?", 1.0),
}
LEAD_S, TAIL_S = 0.5, 0.8


def main() -> None:
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(str(resolve_model("tts").path))
    OUT.mkdir(parents=True, exist_ok=True)
    transcripts = {}
    for name, (text, scale) in QUESTIONS.items():
        cfg = SynthesisConfig(length_scale=scale)
        parts = [c.audio_float_array for c in voice.synthesize(text, syn_config=cfg)]
        speech = resample(np.concatenate(parts), voice.config.sample_rate, SAMPLE_RATE)
        audio = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), speech,
                                np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32)])
        write_wav(OUT / name, audio * 0.8, SAMPLE_RATE)
        transcripts[name] = text
        print(f"{name}: {len(audio) / SAMPLE_RATE:.2f} s  {text}")
    (OUT / "transcripts.json").write_text(json.dumps(transcripts, indent=2) + "\n")


if __name__ == "__main__":
    main()
