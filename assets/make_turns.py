#!/usr/bin/env python3
"""Regenerate the turn-taking clips: questions in voices the project never trained on.

``assets/turns/`` holds the end-of-turn benchmark set (bench/turns.py): espeak-ng voices
(not piper joe) at several speeds, some with background noise, and a *pause* set whose
questions stop for 600–800 ms where the sentence is plainly unfinished ("what is the
capital of … Australia?"). ``assets/turns/moon_pause.wav`` is the test clip
(tests/test_turn.py), made with the embedded piper voice the same way.

A pause is spliced into one synthesised sentence rather than synthesised as a break:
a TTS ends a clause before an explicit break with a final fall, which is not how people
hesitate. The splice point is the gap between the two words (from faster-whisper's word
times), moved to the quietest 10 ms nearby.

Needs espeak-ng (apt-get install espeak-ng). Run: python assets/make_turns.py
(``--heldout``: only the held-out set, into assets/turns/heldout/; ``--lists``: only the
list set, into assets/turns/lists/).
Writes 16 kHz mono FLAC (half the size of WAV) and turns.json (text, pause, voice).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voice_agent.audio import SAMPLE_RATE  # noqa: E402
from voice_agent.audio.wav import read_wav, resample, write_wav  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "turns"
LEAD_S, TAIL_S = 0.5, 1.0
# "|" marks where the pause goes. (name, text, voice, words per minute, pause s, noise SNR dB)
CLIPS = [
    ("moon", "How far away is the moon?", "en-us", 165, 0, None),
    ("tokyo", "What time is it in Tokyo right now?", "en-gb", 200, 0, None),
    ("book", "Can you recommend a good book about history?", "en-us+f3", 140, 0, 20),
    ("pride", "Who wrote Pride and Prejudice?", "en-gb-scotland", 165, 0, None),
    ("mountain", "What is the tallest mountain in the world?", "en-029", 130, 0, 25),
    ("lights", "Please turn off the lights in the kitchen.", "en-us+m3", 190, 0, None),
    ("australia_p", "What is the capital of | Australia?", "en-us", 165, 0.7, None),
    ("cheetah_p", "So what I want to know is | how fast a cheetah can run.", "en-gb", 150, 0.8, None),
    ("canada_p", "Could you tell me the | population of Canada?", "en-us+f3", 190, 0.6, 20),
    ("table_p", "I would like to book a table for | four people tonight.", "en-gb-scotland", 140,
     0.75, None),
    ("leap_p", "How many days are there in | a leap year?", "en-029", 175, 0.65, 25),
    ("sister_p", "Remind me to call | my sister tomorrow morning.", "en-us+m3", 160, 0.7, None),
]
TEST_CLIP = ("moon_pause", "So what I want to know is | how far away the moon is.", 0.7)
# The held-out set (assets/turns/heldout/, ``--heldout``): sentences and voices that
# nothing in the end-of-turn policy was looked at or tuned on (the transcript check in
# asr/endings.py was written after the set above had been heard through it, so that set
# is no longer blind to it). Pauses sit after several word classes (preposition, article,
# conjunction, verb, number); the complete ones include stranded prepositions and short
# commands, where a text rule could wrongly hold a finished turn.
HELDOUT = [
    ("egg_p", "Can you tell me how long it takes to | boil an egg?", "en-gb-x-rp", 160, 0.7, None),
    ("timer_p", "Set a timer for | twenty minutes.", "en-us-nyc", 175, 0.65, None),
    ("mona_p", "Who painted the | Mona Lisa?", "en-gb-x-gbclan+f2", 150, 0.8, 20),
    ("pancake_p", "I need a recipe for pancakes and | something quick for lunch.",
     "en-gb-x-gbcwmd", 170, 0.7, None),
    ("twelve_p", "What is twelve times | fifteen?", "en-us+f4", 155, 0.75, None),
    ("sky_p", "Why is the sky blue during the day but | red at sunset?", "en-gb-x-rp+m5", 180,
     0.6, 25),
    ("penguin_p", "Tell me a joke about | penguins.", "en-us+Annie", 165, 0.7, None),
    ("convert_p", "How do I convert | miles into kilometres?", "en-gb-x-rp", 145, 0.8, None),
    ("rain_p", "Is it going to rain in | London this weekend?", "en-us-nyc", 190, 0.65, 20),
    ("dinner_p", "What should I cook for dinner with | chicken and rice?", "en-us+f4", 160,
     0.75, None),
    ("from_c", "Where are you from?", "en-gb-x-gbcwmd", 165, 0, None),
    ("made_c", "What is this table made of?", "en-us+Annie", 160, 0, None),
    ("stop_c", "Stop the music.", "en-gb-x-rp+m5", 170, 0, None),
    ("volume_c", "Turn the volume up.", "en-us-nyc", 180, 0, 20),
    ("weather_c", "What is the weather like today?", "en-gb-x-gbclan+f2", 150, 0, None),
    ("president_c", "Who is the president of France?", "en-gb-x-rp", 175, 0, None),
    ("yes_c", "Yes, please.", "en-us+f4", 160, 0, None),
    ("thanks_c", "Thank you very much.", "en-gb-x-gbcwmd", 155, 0, 25),
]

# The list set (assets/turns/lists/, ``--lists``, made 6 Dec with espeak-ng 1.51): lists said
# with a pause after items, as people list things (each "|" a pause), and complete turns
# whose last comma is followed by a noun phrase and no "and", where the open-list reading
# (asr/endings.py) waits longer for nothing. Written for the rule's bench, not from any
# evaluation set; piper's BIG-Bench Hard lists are in docs/turn_taking.md instead.
LISTS = [
    ("shopping_l", "I need eggs, | milk, | bread, | and a bag of rice from the shop.",
     "en-gb-x-rp", 165, 0.5, None),
    ("pets_l", "I have a cat, two dogs, | a rabbit, | and a parrot. How many pets do I have?",
     "en-us+f3", 160, 0.45, None),
    ("colours_l", "My favourite colours are red, green, | blue, | and yellow.", "en-us-nyc",
     175, 0.55, 20),
    ("baking_l", "Add two lemons, a bag of flour, | some butter, | and sugar to my list.",
     "en-gb-x-gbclan+f2", 150, 0.6, None),
    ("office_l", "Remind me to buy a lamp, a chair, | a desk, | and a rug for the office.",
     "en-us+m3", 185, 0.4, 25),
    ("joke_c", "Tell me a joke, a short one.", "en-gb-x-gbcwmd", 160, 0, None),
    ("sister_c", "Call my sister, the older one.", "en-us+Annie", 170, 0, None),
]


def espeak(text: str, voice: str, wpm: int) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        sys.exit("error: espeak-ng not found (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "out.wav"
        subprocess.run([exe, "-v", voice, "-s", str(wpm), "-w", str(path), text], check=True)
        return read_wav(path, SAMPLE_RATE)


def piper(text: str) -> np.ndarray:
    from piper import PiperVoice

    from voice_agent.models import resolve_model

    voice = PiperVoice.load(str(resolve_model("tts").path))
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
    return resample(audio.astype(np.float32), voice.config.sample_rate, SAMPLE_RATE)


def trim(audio: np.ndarray, level: float = 0.005) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > level)
    return audio[loud[0]:loud[-1] + 1] if len(loud) else audio


def splice_points(audio: np.ndarray, words_before: list[int]) -> list[int]:
    """Sample indices between word ``n`` and the next, for each ``n`` in ``words_before``,
    each at the quietest 10 ms near the gap."""
    from voice_agent.asr.whisper import load_whisper

    segments, _ = load_whisper().transcribe(audio, language="en", word_timestamps=True)
    words = [w for s in segments for w in s.words]
    hop = SAMPLE_RATE // 100
    cuts = []
    for n in words_before:
        centre = int((words[n - 1].end + words[n].start) / 2 * SAMPLE_RATE)
        starts = range(max(0, centre - 6 * hop), min(len(audio) - hop, centre + 6 * hop), hop // 2)
        cuts.append(min(starts, key=lambda i: float(np.sum(audio[i:i + hop] ** 2))) + hop // 2)
    return cuts


def build(text: str, synth, pause_s: float, snr_db: float | None, seed: int) -> np.ndarray:
    parts = text.split("|")
    audio = trim(synth(text.replace("|", "").replace("  ", " ")))
    if len(parts) > 1:
        counts = np.cumsum([len(part.split()) for part in parts[:-1]]).tolist()
        gap = np.zeros(int(pause_s * SAMPLE_RATE), np.float32)
        pieces, start = [], 0
        for cut in splice_points(audio, counts):
            pieces += [audio[start:cut], gap]
            start = cut
        audio = np.concatenate(pieces + [audio[start:]])
    audio = np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), audio,
                            np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32)])
    audio = 0.5 * audio / max(1e-6, float(np.max(np.abs(audio))))
    if snr_db is not None:  # steady noise over the whole clip, as a fan or a street would
        speech_rms = float(np.sqrt(np.mean(audio[np.abs(audio) > 0.01] ** 2)))
        noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
        audio = audio + noise * speech_rms / 10 ** (snr_db / 20)
    return audio.astype(np.float32)


def write_set(clips: list[tuple], out: Path, seed: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {}
    for i, (name, text, voice, wpm, pause_s, snr) in enumerate(clips):
        audio = build(text, lambda t, v=voice, s=wpm: espeak(t, v, s), pause_s, snr, seed=seed + i)
        path = out / f"{name}.flac"
        write_wav(path, audio, SAMPLE_RATE)
        meta[path.name] = {"text": text.replace("| ", ""), "voice": f"espeak-ng {voice}",
                           "wpm": wpm, "pause_s": pause_s, "snr_db": snr}
        print(f"{path.name}: {len(audio) / SAMPLE_RATE:.2f} s")
    (out / "turns.json").write_text(json.dumps(meta, indent=1) + "\n")


def main() -> None:
    if "--lists" in sys.argv[1:]:
        write_set(LISTS, OUT / "lists", seed=200)
        return
    write_set(HELDOUT, OUT / "heldout", seed=100)
    if "--heldout" in sys.argv[1:]:
        return
    write_set(CLIPS, OUT)
    name, text, pause_s = TEST_CLIP
    path = OUT / f"{name}.wav"
    write_wav(path, build(text, piper, pause_s, None, seed=0), SAMPLE_RATE)
    print(f"{path.name}: piper joe, {pause_s} s pause")


if __name__ == "__main__":
    main()
