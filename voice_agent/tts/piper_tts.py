"""The piper voice: loaded once, with a bounded number of onnxruntime threads.

piper and onnxruntime are imported here only, when a voice is loaded, so that importing
``voice_agent`` or the chunker does not need them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_agent.errors import ModelError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TtsConfig:
    """Settings for the voice and its synthesis thread."""

    # a piper .onnx path (its .onnx.json beside it); None: resolve_model("tts")
    voice: str | None = None
    # onnxruntime intra-op threads: one leaves the other core to the language model
    threads: int = 1
    length_scale: float | None = None  # speaking rate, >1 is slower; None: the voice's own
    # synthesis runs at most this much audio ahead of playback: memory stays flat
    max_ahead_s: float = 8.0


class PiperTts:
    """One loaded piper voice.

    Args:
        config: voice path, thread count and speaking rate.

    Raises:
        ModelError: the voice cannot be found or loaded.
    """

    def __init__(self, config: TtsConfig | None = None) -> None:
        self.config = config or TtsConfig()
        self.path = _voice_path(self.config.voice)
        started = time.perf_counter()
        self._voice = _load(self.path, self.config.threads)
        self.load_s = time.perf_counter() - started
        self.sample_rate = int(self._voice.config.sample_rate)
        from piper import SynthesisConfig

        self._syn = SynthesisConfig(length_scale=self.config.length_scale)
        logger.info("piper voice %s loaded in %.2f s (%d Hz, %d thread(s))", self.path.name,
                    self.load_s, self.sample_rate, self.config.threads)

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Float32 mono audio at ``sample_rate``, one piece per sentence as piper makes it.

        The generator does the work while it is iterated: consume it on the TTS thread.
        """
        for chunk in self._voice.synthesize(text, syn_config=self._syn):
            yield chunk.audio_float_array

    def warm_up(self) -> float:
        """Run one short synthesis so the first real one is not slow; returns seconds."""
        started = time.perf_counter()
        for _ in self.synthesize("Hello."):
            pass
        return time.perf_counter() - started


def _voice_path(voice: str | None) -> Path:
    if voice is None:
        from voice_agent.models import resolve_model

        return resolve_model("tts").path
    path = Path(voice)
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if not found:
            raise ModelError(f"{path}: no piper .onnx voice in this folder")
        path = found[0]
    if not path.exists():
        raise ModelError(f"{path}: piper voice not found (give a .onnx file, or leave "
                         "--voice out to use the embedded voice)")
    return path


def _load(path: Path, threads: int):
    config_path = Path(f"{path}.json")
    if not config_path.exists():
        raise ModelError(f"{path}: its config {config_path.name} is missing beside it")
    try:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError as e:
        raise ModelError(f"piper is not installed ({e}); pip install piper-tts") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(int(threads), 1)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Every sentence is a new input length. onnxruntime's CPU arena keeps the high-water
    # mark of all of them for the life of the voice (516 MiB mmap'd after 40 random
    # sentences of 2-40 words), and memory patterns are planned per shape. Without them
    # each run allocates and frees its own buffers: ~200 MiB less RSS, no slower
    # (docs/reliability.md, "Soak").
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    try:
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                               providers=["CPUExecutionProvider"])
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"{path}: cannot load the piper voice ({e})") from None
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ModelError(f"{path}: cannot load the piper voice ({type(e).__name__}: "
                         f"{str(e)[:200]})") from None
    return PiperVoice(config=config, session=session)
