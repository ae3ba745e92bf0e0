"""faster-whisper adapter: load a model once, decode a buffer into timed words.

faster_whisper is imported here only, lazily. The decode drives the CTranslate2 model
directly (encode, generate, align) rather than ``WhisperModel.transcribe``, because
``transcribe`` always pads to a 30 s encoder window: for a few seconds of speech that
window is ~90% of the cost. A fitted window (the buffer plus padding) is several times
cheaper; when its output looks degenerate the decode is redone with the full window.
Everything here runs on the calling thread (the ASR thread): nothing lazy escapes it.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voice_agent.asr.config import AsrConfig
from voice_agent.asr.policy import Word
from voice_agent.audio import SAMPLE_RATE
from voice_agent.errors import ModelError

logger = logging.getLogger(__name__)

_HOP = 160  # samples per mel frame (10 ms)
_FULL_FRAMES = 3000  # the 30 s window Whisper was trained on
_MAX_TOKENS = 448  # Whisper's decoder context
_TOKENS_PER_S = 8  # generous: fluent speech is ~3 words (~4 tokens) per second
_DEGENERATE_RATIO = 2.4  # zlib compression ratio above which text is a repetition loop

_cache: dict[tuple[str, int], Any] = {}
_cache_lock = threading.Lock()


def resolve_asr_model(name_or_path: str | Path | None = None) -> Path:
    """A faster-whisper model folder: an existing folder as given, else a model name."""
    if name_or_path is not None and Path(name_or_path).expanduser().is_dir():
        path = Path(name_or_path).expanduser()
    else:
        try:
            from voice_agent.models import resolve_model
        except ImportError as e:
            raise ModelError(f"cannot resolve ASR model {name_or_path!r}: model resolution "
                             f"is unavailable ({e}); pass a model folder with --asr PATH") from None
        path = Path(resolve_model("asr", None if name_or_path is None else str(name_or_path)).path)
    if not (path / "model.bin").is_file():
        raise ModelError(f"{path}: not a faster-whisper model folder (no model.bin)")
    return path


def load_whisper(name_or_path: str | Path | None = None, cpu_threads: int = 1) -> Any:
    """Load (once per process, per folder and thread count) a CPU int8 WhisperModel."""
    path = resolve_asr_model(name_or_path)
    key = (str(path.resolve()), int(cpu_threads))
    with _cache_lock:
        if key not in _cache:
            try:
                from faster_whisper import WhisperModel
            except ImportError as e:
                raise ModelError(f"faster-whisper is not installed ({e}); "
                                 "install the asr extra") from None
            t0 = time.perf_counter()
            try:
                _cache[key] = WhisperModel(str(path), device="cpu", compute_type="int8",
                                           cpu_threads=int(cpu_threads))
            except (RuntimeError, ValueError, OSError) as e:
                raise ModelError(f"{path}: cannot load the faster-whisper model ({e})") from None
            logger.info("loaded ASR model %s in %.2f s", path, time.perf_counter() - t0)
        return _cache[key]


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """One decode of a buffer. Word times are seconds from the buffer start."""

    words: list[Word]
    audio_s: float  # length of the decoded audio
    window_s: float  # encoder window actually used
    compute_s: float  # wall time of the decode
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    fallback: bool = False  # the fitted window looked degenerate and was redone in full
    tokens: list[int] = field(default_factory=list)
    # the probability Whisper gave its last text token (how sure it is of the end mark it
    # wrote: the end-of-turn policy reads it); None without tokens
    last_prob: float | None = None


class WhisperDecoder:
    """Decodes float32 16 kHz mono buffers (≤ 30 s) into words with timestamps."""

    def __init__(self, model: Any, config: AsrConfig = AsrConfig()) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.model = model
        self.config = config
        self.tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                                   task="transcribe", language=config.language)
        self._suppress = list(get_suppressed_tokens(self.tokenizer, (-1,)) or [])

    def warm_up(self) -> float:
        """One decode of a second of silence; returns its seconds (first calls allocate)."""
        t0 = time.perf_counter()
        self.decode(np.zeros(SAMPLE_RATE, dtype=np.float32))
        return time.perf_counter() - t0

    def decode(self, audio: np.ndarray, prompt: str = "",
               beam_size: int | None = None) -> Hypothesis:
        """``beam_size``: this decode's beam (``config.beam_size`` when None)."""
        t0 = time.perf_counter()
        beam = beam_size or self.config.beam_size
        audio = np.asarray(audio, dtype=np.float32)[: _FULL_FRAMES * _HOP]
        audio_s = len(audio) / SAMPLE_RATE
        feats = self.model.feature_extractor(audio)[:, : len(audio) // _HOP]  # (80, frames)
        content = feats.shape[-1]
        full = self.config.encoder_window == "full"
        frames = _FULL_FRAMES if full else self._fit(audio_s)
        hyp = self._decode_window(feats, content, prompt, frames, beam)
        fallback = False
        if not full and _degenerate(hyp, self.tokenizer, audio_s):
            logger.debug("fitted window gave degenerate text; redoing with 30 s")
            hyp = self._decode_window(feats, content, prompt, _FULL_FRAMES, beam)
            fallback = True
        tokens, words, nsp, logprob, window, last_prob = hyp
        if nsp > self.config.no_speech_threshold and logprob < self.config.logprob_threshold:
            words, tokens, last_prob = [], [], None
        return Hypothesis(words=words, audio_s=audio_s, window_s=window * _HOP / SAMPLE_RATE,
                          compute_s=time.perf_counter() - t0, no_speech_prob=nsp,
                          avg_logprob=logprob, fallback=fallback, tokens=tokens,
                          last_prob=last_prob)

    def _fit(self, audio_s: float) -> int:
        """Encoder frames for a fitted window: buffer + padding, whole seconds, even."""
        seconds = max(self.config.min_window_s, np.ceil(audio_s + self.config.window_pad_s))
        return int(min(_FULL_FRAMES, seconds * 100)) // 2 * 2

    def _decode_window(self, feats: np.ndarray, content: int, prompt: str, frames: int,
                       beam: int):
        from faster_whisper.transcribe import get_ctranslate2_storage

        window = np.zeros((1, feats.shape[0], frames), dtype=np.float32)
        window[0, :, : min(content, frames)] = feats[:, :frames]
        encoded = self.model.model.encode(get_ctranslate2_storage(window))
        prompt_ids = self._prompt(prompt)
        budget = int(_TOKENS_PER_S * content / 100) + 16
        result = self.model.model.generate(
            encoded, [prompt_ids], beam_size=beam,
            max_length=min(_MAX_TOKENS, len(prompt_ids) + budget), return_scores=True,
            return_logits_vocab=beam == 1, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=self._suppress)[0]
        tokens = [t for t in result.sequences_ids[0] if t < self.tokenizer.eot]
        words = self._align(tokens, encoded, min(content, frames))
        # A beam search returns no step logits (CTranslate2 gives one row): one greedy step
        # after the beam's other tokens scores its last one, as a greedy decode would.
        last_prob = _last_prob(result, tokens) if beam == 1 else self._score_last(
            encoded, prompt_ids, tokens)
        return (tokens, words, float(result.no_speech_prob), float(result.scores[0]), frames,
                last_prob)

    def _score_last(self, encoded: Any, prompt_ids: list[int], tokens: list[int]) -> float | None:
        """P(``tokens[-1]`` | the tokens before it): a greedy decode forced through the
        others (the result repeats them, a logits row per token), then on to its end."""
        if not tokens:
            return None
        prefix = prompt_ids + tokens[:-1]
        # How CTranslate2 counts max_length against a forced prefix depends on the context
        # prompt (it stopped short of the prefix's end near its length): bound it loosely;
        # the greedy decode usually ends one step later, at end of text, as the beam did.
        result = self.model.model.generate(
            encoded, [prefix], beam_size=1,
            max_length=min(_MAX_TOKENS, len(prefix) + len(tokens) + 1),
            return_logits_vocab=True, suppress_blank=len(tokens) == 1,
            suppress_tokens=self._suppress)[0]
        return _last_prob(result, tokens)

    def _prompt(self, prompt: str) -> list[int]:
        ids: list[int] = []
        if prompt.strip():
            text_ids = self.tokenizer.encode(" " + prompt.strip())
            ids = [self.tokenizer.sot_prev] + text_ids[-(_MAX_TOKENS // 2 - 1):]
        return ids + list(self.tokenizer.sot_sequence) + [self.tokenizer.no_timestamps]

    def _align(self, tokens: list[int], encoded: Any, frames: int) -> list[Word]:
        from faster_whisper.transcribe import merge_punctuations

        if not tokens:
            return []
        aligned = self.model.find_alignment(self.tokenizer, [tokens], encoded, frames)[0]
        merge_punctuations(aligned, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
        limit = frames / 100
        return [Word(w["word"], float(min(w["start"], limit)), float(min(w["end"], limit)))
                for w in aligned if w["word"]]


def _last_prob(result: Any, tokens: list[int]) -> float | None:
    """P(last text token) at the step that chose it, from the step's vocabulary logits."""
    steps = getattr(result, "logits", None)
    if not tokens or not steps or len(steps[0]) < len(tokens):
        return None
    row = np.asarray(steps[0][len(tokens) - 1], dtype=np.float64)
    row = np.exp(row - row.max())
    return float(row[tokens[-1]] / row.sum())


def _degenerate(decoded: tuple, tokenizer: Any, audio_s: float) -> bool:
    """A repetition loop: text that compresses too well, or tokens that hit the budget."""
    tokens = decoded[0]
    if not tokens:
        return False
    text = tokenizer.decode(tokens).encode("utf-8")
    ratio = len(text) / max(1, len(zlib.compress(text)))
    return ratio > _DEGENERATE_RATIO or len(tokens) >= int(_TOKENS_PER_S * audio_s) + 15
