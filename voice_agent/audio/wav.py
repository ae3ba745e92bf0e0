"""WAV reading and writing with clear errors, and resampling with soxr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voice_agent.audio import SAMPLE_RATE
from voice_agent.errors import AudioInputError

# Files are read whole into memory (float32 at the device rate, then 16 kHz): an hour is
# about 0.5 GB at 48 kHz stereo. Longer input is refused from its header, before reading.
MAX_AUDIO_S = 3600.0


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
    _check_wav_complete(p)
    try:
        info = sf.info(str(p))
        if info.samplerate > 0 and info.frames / info.samplerate > MAX_AUDIO_S:
            raise AudioInputError(
                f"{p}: too long ({info.frames / info.samplerate / 60:.0f} min of audio; "
                f"the most is {MAX_AUDIO_S / 60:.0f} min)")
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioInputError(f"{p}: not a readable audio file ({_short(e)})") from None
    if data.shape[0] == 0:
        raise AudioInputError(f"{p}: contains no audio samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(np.ascontiguousarray(mono, dtype=np.float32), sr, rate)


def _check_wav_complete(p: Path) -> None:
    """Refuse a RIFF/WAVE file whose data chunk is shorter than its header declares.

    libsndfile quietly plays what is there, which would turn a cut-off upload into a
    cut-off question. Writers that stream (size 0 or 0xFFFFFFFF placeholders) are let be.
    """
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            cid, length = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if cid == b"data":
                if length in (0, 0xFFFFFFFF):
                    return
                have = size - pos - 8
                if have < length:
                    raise AudioInputError(
                        f"{p}: truncated WAV (the header declares {length} bytes of audio, "
                        f"the file holds {have})")
                return
            pos += 8 + length + (length & 1)  # chunks are word-aligned


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
