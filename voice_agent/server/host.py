"""The models a server shares between its sessions, loaded once.

One copy of the LLM weights, one faster-whisper model, one piper voice, and the one
model worker thread (``SharedModelWorker``) that runs every session's decoder. Each
session gets its own decoder object (its KV arena and turn state) over the shared
weights, built on the model thread; its own listener thread and TTS thread use the
shared ASR and TTS models (faster-whisper and onnxruntime sessions may be called from
several threads).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

from voice_agent.config import Config
from voice_agent.runner import Models
from voice_agent.shared_worker import SharedModelWorker
from voice_agent.trace import SessionClock

logger = logging.getLogger(__name__)


class ModelHost:
    """Loads and warms the models; builds per-session decoders on the model thread.

    Args:
        config: the settings tree (``runtime``, ``session.mode``, ``asr``, ``tts``, ``engine``...).
        models: which llm / asr / tts to resolve.
    Raises ``ModelError`` (one clear line) when a model cannot be resolved or loaded.
    """

    def __init__(self, config: Config, models: Models) -> None:
        import torch

        from voice_agent.asr.text_turn import load_text_turn_model
        from voice_agent.asr.whisper import load_whisper
        from voice_agent.core.precision import load_llm_precise
        from voice_agent.models import resolve_model
        from voice_agent.tts.piper_tts import PiperTts

        t0 = time.perf_counter()
        self.config, self.models, self.mode = config, models, config.session.mode
        asr_cfg = config.asr if models.asr is None else dataclasses.replace(config.asr, model=models.asr)
        if self.mode == "cascade":  # whole-utterance recognition when the user stops
            asr_cfg = dataclasses.replace(asr_cfg, interval_s=1e9, speculative_final=False)
        self.asr_config = asr_cfg
        self.tts_config = config.tts if models.tts is None else dataclasses.replace(
            config.tts, voice=str(resolve_model("tts", models.tts).path))
        self.model_info = {"llm": resolve_model("llm", models.llm).to_dict(),
                           "asr": resolve_model("asr", asr_cfg.model).to_dict(),
                           "tts": resolve_model("tts", self.tts_config.voice).to_dict()}
        torch.set_num_threads(config.runtime.torch_threads)
        self.llm, self.tokenizer = load_llm_precise(models.llm, config.runtime.device,
                                                    config.runtime.dtype,
                                                    config.runtime.skinny_matmul)
        self.llm_name = getattr(self.llm.config, "voice_agent_name", models.llm or "default")
        self.whisper = load_whisper(asr_cfg.model, asr_cfg.cpu_threads)
        # one copy for every connection's listener (None: off, or failed with a warning)
        self.text_turn_model = load_text_turn_model(config.vad.turn_text_model)
        self.tts = PiperTts(self.tts_config)
        self.worker = SharedModelWorker()
        self._warm_up()
        self.load_s = time.perf_counter() - t0
        self._closed = threading.Event()
        logger.info("models loaded and warm in %.1f s", self.load_s)

    @property
    def noise_model(self) -> bool:
        return self.llm_name == "tiny"

    def new_decoder(self, clock: SessionClock) -> Any:
        """A decoder for one session over the shared weights; call it on the model thread
        (``self.worker.call``)."""
        from voice_agent.core import Baseline, Engine

        if self.mode == "async":
            return Engine(self.llm, self.tokenizer, self.config.engine, clock)
        kind = "think" if self.mode == "think" else "nothink"
        return Baseline(self.llm, self.tokenizer, kind, self.config.engine, clock)

    def _warm_up(self) -> None:
        """First calls pay allocation and kernel selection: start-up cost, paid once here
        and not by the first session's first turn."""
        from voice_agent.asr.whisper import WhisperDecoder

        for _ in self.tts.synthesize("Okay."):
            pass
        WhisperDecoder(self.whisper, self.asr_config).warm_up()
        self.worker.call(lambda: self.new_decoder(SessionClock()).warm_up()).result()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.worker.close()
