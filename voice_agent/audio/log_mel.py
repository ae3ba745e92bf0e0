"""Whisper-style log-mel features in numpy, for the Smart Turn end-of-turn model.

Smart Turn v3 is a Whisper-tiny encoder with a classifier head, trained on the features
that ``transformers.WhisperFeatureExtractor(chunk_length=8)`` makes: 16 kHz audio,
normalised to zero mean and unit variance, a 400-sample (25 ms) Hann STFT every 160
samples (10 ms), 80 Slaney mel bands from 0 to 8 kHz, log10, floored at 8 below the
maximum and mapped with (x + 4) / 4. We compute the same thing here so the listener does
not import transformers (seconds of import) for a 10 ms computation; a test checks the
result against transformers.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 400
HOP = 160
N_MELS = 80


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * 200.0 / 3.0
    log_part = 1000.0 * np.exp((mel - 15.0) * (np.log(6.4) / 27.0))
    return np.where(mel >= 15.0, log_part, linear)


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters with Slaney area normalisation."""
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    tri = np.clip(np.minimum(rising, falling), 0.0, None)
    return tri * (2.0 / (upper - lower))  # each band integrates to the same area


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    # periodic Hann (as torch.hann_window and the Whisper reference use)
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Features of ``audio`` (float, 16 kHz, mono; the caller pads or cuts it to the
    model's window); returns float32 of shape (N_MELS, len(audio) // HOP)."""
    x = np.asarray(audio, dtype=np.float32)
    # normalised over the whole window, silence padding included, as at inference upstream
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")  # centred frames
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _window(), axis=-1)) ** 2  # (frames, bins)
    mel = np.log10(np.maximum(mel_filters() @ power.T, 1e-10))[:, :len(x) // HOP]
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)
