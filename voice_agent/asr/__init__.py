"""Streaming speech recognition: stable committed words plus a tentative tail.

``Listener`` (VAD + recogniser, fed frame by frame) is what a session uses;
``StreamingAsr`` and ``Vad`` work alone too. faster-whisper loads only when a model does.
"""

from voice_agent.asr.config import AsrConfig, ListenConfig
from voice_agent.asr.listener import Listener
from voice_agent.asr.policy import LocalAgreement, Word
from voice_agent.asr.streaming import StreamingAsr
from voice_agent.asr.whisper import WhisperDecoder, load_whisper

__all__ = ["AsrConfig", "ListenConfig", "Listener", "LocalAgreement", "StreamingAsr",
           "WhisperDecoder", "Word", "load_whisper"]
