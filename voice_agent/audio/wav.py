"""WAV reading and writing with clear errors, and resampling with soxr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voice_agent.audio import SAMPLE_RATE
from voice_agent.errors import AudioInputError


def read_wav(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any readable audio file → float32 mono at ``rate``, in [-1, 1].

    Raises AudioInputError with one readable line for every kind of bad file.
    """
    p = Path(path)
    if not p.exists():
        raise AudioInputError(f"{p}: no such file")
    if p.is_dir():
        raise AudioInputError(f"{p}: is a folder, not an audio file")
    if p.stat().st_size == 0:
        raise AudioInputError(f"{p}: empty file (0 bytes)")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioInputError(f"{p}: not a readable audio file ({_short(e)})") from None
    if data.shape[0] == 0:
        raise AudioInputError(f"{p}: contains no audio samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(np.ascontiguousarray(mono, dtype=np.float32), sr, rate)


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return x.astype(np.float32, copy=False)
    return soxr.resample(x, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def write_wav(path: str | Path, audio: np.ndarray, rate: int) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(p), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16")
    return p


def to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def _short(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:120]
