"""The transcript collector: events in, per-utterance figures out (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from voice_agent.asr.transcript import TranscriptCollector
from voice_agent.audio.frames import AudioFrame
from voice_agent.events import AsrCommit, AsrFinal, VadEnd, VadStart


def collector_with_frames(seconds: float, delay: float) -> TranscriptCollector:
    c = TranscriptCollector()
    for i in range(int(seconds / 0.02)):
        c.on_frame(AudioFrame(t=(i + 1) * 0.02 + delay, audio_t=round(i * 0.02, 6),
                              pcm=np.zeros(320, np.int16)))
    return c


def test_final_after_the_next_start_belongs_to_its_own_utterance():
    c = collector_with_frames(4.0, delay=0.01)
    for ev in [VadStart(t=0.5, audio_t=0.4), VadEnd(t=1.8, audio_t=1.5),
               VadStart(t=1.9, audio_t=1.84), AsrFinal(t=1.95, text="first", speech_end=1.5),
               VadEnd(t=3.3, audio_t=3.0), AsrFinal(t=3.4, text="second", speech_end=3.0)]:
        c.on_event(ev)
    assert [u.text for u in c.utterances] == ["first", "second"]
    # Speech ending at 1.5 s of audio was delivered at 1.51 s on the session clock.
    assert c.utterances[0].final_latency_s == pytest.approx(1.95 - 1.51)
    assert c.utterances[1].final_latency_s == pytest.approx(3.4 - 3.01)


def test_commit_lag_is_measured_from_the_delivery_of_each_word_end():
    c = collector_with_frames(2.0, delay=0.0)
    c.on_event(AsrCommit(t=1.5, text="hi there", words=[["hi", 0.2, 0.5], ["there", 0.5, 1.0]]))
    assert c.commit_lags() == pytest.approx([1.0, 0.5])
