"""The unit of audio input: a 20 ms frame of 16 kHz mono int16, stamped on two clocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from voice_agent.audio import FRAME_SAMPLES, SAMPLE_RATE

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One frame of input audio.

    Fields:
        t: session-clock seconds when the frame was delivered (its last sample was recorded).
        audio_t: seconds from the start of the source's audio to the frame's first sample.
        pcm: int16[FRAME_SAMPLES], mono, 16 kHz. Treat as read-only.
    """

    t: float
    audio_t: float
    pcm: np.ndarray

    @property
    def end_t(self) -> float:
        """Audio time just after the frame's last sample."""
        return round(self.audio_t + FRAME_S, 6)


def slice_frames(pcm: np.ndarray) -> Iterator[np.ndarray]:
    """Cut int16 mono audio into whole frames; a short last frame is padded with zeros."""
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"expected 1-D int16 audio, got {pcm.dtype} with shape {pcm.shape}")
    for start in range(0, len(pcm), FRAME_SAMPLES):
        frame = pcm[start:start + FRAME_SAMPLES]
        if len(frame) < FRAME_SAMPLES:
            frame = np.pad(frame, (0, FRAME_SAMPLES - len(frame)))
        yield frame


class FrameSlicer:
    """Regroups blocks of any length (as a sound card delivers them) into whole frames.

    Samples that do not fill a frame yet wait for the next block, so no audio is lost or
    duplicated at block boundaries.
    """

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)
        self.samples_out = 0  # samples emitted so far, i.e. the next frame's audio position

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        data = np.concatenate([self._pending, np.asarray(block, dtype=np.int16).reshape(-1)])
        n_whole = len(data) // FRAME_SAMPLES * FRAME_SAMPLES
        frames = [data[i:i + FRAME_SAMPLES].copy() for i in range(0, n_whole, FRAME_SAMPLES)]
        self._pending = data[n_whole:]
        self.samples_out += n_whole
        return frames


def frame_rms(pcm: np.ndarray) -> float:
    """Root-mean-square level of int16 audio, in [0, 1] of full scale."""
    x = pcm.astype(np.float32) / 32768.0
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
