"""Smart Turn v3.2: is the speaker done? One probability from the end of an utterance.

The model (Pipecat's Smart Turn, BSD-2; a Whisper-tiny encoder with a classifier head)
reads the **last 8 s** of the utterance as 16 kHz mono audio, zero-padded at the *start*
when shorter, turned into 80 × 800 Whisper log-mel features (``log_mel.py``); its one
output is the probability that the turn is complete (already a sigmoid, in 0..1). It
hears prosody and the words together, so "what is the capital of" stays open while
"what is the capital of France" ends. It costs ~30–60 ms on one CPU thread.

The ONNX file ships in the ``pipecat-ai`` wheel (a weight carrier; pipecat is never
imported): ``resolve_model("turn")`` finds it and checks its SHA-256.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from voice_agent.audio.log_mel import SAMPLE_RATE, log_mel
from voice_agent.errors import ModelError

logger = logging.getLogger(__name__)

WINDOW_S = 8.0  # what the model was trained on; older audio is cut, shorter is padded
WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)


class SmartTurn:
    """The end-of-turn classifier on onnxruntime, one CPU thread (ASR and the LLM run beside)."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for a bad or absent file
            first = (str(e).splitlines() or [""])[0][:160]
            raise ModelError(f"turn model {path}: cannot load it ({first})") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [80, WINDOW_SAMPLES // 160]:
            raise ModelError(f"turn model {path}: expected one input of shape [batch, 80, 800], "
                             f"got {[(i.name, i.shape) for i in inputs]}")
        self._input = inputs[0].name
        self.path = Path(path)
        self.last_ms = 0.0

    @classmethod
    def load(cls, name: str | None = None) -> SmartTurn:
        """Resolve ``name`` (None: the manifest's default; or a path) and load it.
        Raises ``ModelError`` for a missing package, a hash mismatch or a bad file."""
        from voice_agent.models import resolve_model

        return cls(resolve_model("turn", name).path)

    def probability(self, audio: np.ndarray) -> float:
        """P(turn complete) for ``audio`` (float32 in -1..1, 16 kHz, oldest first)."""
        t0 = time.perf_counter()
        window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        tail = np.asarray(audio, dtype=np.float32)[-WINDOW_SAMPLES:]
        if len(tail):
            window[-len(tail):] = tail  # the end aligned to the window's end, as in training
        features = log_mel(window)[None]
        out = self._session.run(None, {self._input: features})[0]
        p = float(np.asarray(out).reshape(-1)[0])
        self.last_ms = (time.perf_counter() - t0) * 1000
        if not 0.0 <= p <= 1.0 or p != p:
            raise ModelError(f"turn model returned {p!r}, not a probability")
        return p
