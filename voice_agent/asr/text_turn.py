"""Do the words heard so far end the user's turn? A chat model's reading of the transcript.

Smart Turn hears prosody and ``endings.py`` reads punctuation and closed-class words, but
Whisper punctuates a cut-off question as a finished one: at the pause in "What is the
capital | of Australia?" it writes "What is the capital?", which both accept. A chat
model knows that users rarely stop there. Its probability of the end-of-turn token right
after the user's words, P(end | words), is the signal LiveKit's turn detector is built
on (a SmolLM2-135M fine-tuned for it); here it is the embedded SmolLM2 as it ships,
not fine-tuned, so it is only trusted where it is very sure that the turn goes on.

Measured zero-shot with the plain embedded model (docs/turn_taking.md, "A language model
reads the words"): whole questions score log10 P(end) of -0.9 to -7.8 and their proper
prefixes a median of -9; Whisper's words at the pauses that split questions
("What is the capital?", "How do I come?") -10.2 and -10.6.

The words are lower-cased and stripped of punctuation before the model reads them, as
LiveKit's detector does (Whisper's marks are ``endings.py``'s business), and encoded as
plain text (``core/untrusted.py``): transcript text is data, never a control token.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any

from voice_agent.core.untrusted import encode_untrusted
from voice_agent.errors import VoiceAgentError

logger = logging.getLogger(__name__)

_MARK = "\u0000words\u0000"  # stands in for the user's words when the template is rendered
_NOT_WORD = re.compile(r"[^\w\s']+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower case, punctuation gone (apostrophes kept), single spaces."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


class TextTurnModel:
    """log10 P(end of the user's turn | the words), from a causal chat model.

    The prompt is the model's own chat template with the words as the user's message,
    cut just before the template's end-of-message token; the probability read is that
    token's. Reads from several threads take turns (the opening's cache is shared);
    callers cache by text.
    """

    def __init__(self, model: Any, tokenizer: Any) -> None:
        import torch
        from transformers import DynamicCache

        self.model = model
        self.tokenizer = tokenizer
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": _MARK}],
                                                 tokenize=False, add_generation_prompt=False)
        if _MARK not in rendered:
            raise VoiceAgentError("the text turn model's chat template drops the user's words")
        before, after = rendered.split(_MARK, 1)
        self._prefix = tokenizer(before, add_special_tokens=False)["input_ids"]
        end = tokenizer(after, add_special_tokens=False)["input_ids"]
        if not end:
            raise VoiceAgentError("the text turn model's chat template has no end-of-message token")
        self.end_id = end[0]
        self.last_ms = 0.0
        self._torch = torch
        self._lock = threading.Lock()  # serve's connections share one model
        # The template's opening (system prompt, user header) is the same for every read:
        # its keys and values are computed once, and each read prefills only the words
        # (fp32 SmolLM2-135M here: about 90 → 55 ms a read).
        self._cache = DynamicCache(config=model.config)
        with torch.inference_mode():
            model(input_ids=torch.tensor([self._prefix]), cache=self._cache, use_cache=True,
                  logits_to_keep=1)

    @classmethod
    def load(cls, name: str) -> "TextTurnModel":
        """An LLM by the names ``--llm`` takes (``embedded`` is the plain SmolLM2), in bf16
        where the CPU does bf16 dot products (a read is memory-bound: half the bytes, half
        the time, 24-28 against 51-65 ms here; log10 P within 0.2 of fp32's: bench/text_turn.py),
        else fp32."""
        import torch

        from voice_agent.core.cpu import cpu_info
        from voice_agent.models import load_llm

        dtype = torch.bfloat16 if cpu_info().native_bf16 else torch.float32
        model, tokenizer = load_llm(name, dtype=dtype)
        return cls(model.eval(), tokenizer)

    def log10_p_end(self, text: str) -> float:
        """log10 P(the turn ends after ``text``); 0.0 for no words (nothing to wait for)."""
        words = normalise(text)
        if not words:
            return 0.0
        t0 = time.perf_counter()
        torch = self._torch
        ids = encode_untrusted(self.tokenizer, words)
        with self._lock, torch.inference_mode():  # one read at a time on the shared opening
            try:
                logits = self.model(input_ids=torch.tensor([ids]), cache=self._cache,
                                    use_cache=True, logits_to_keep=1).logits[0, -1].float()
            finally:
                self._cache.crop(-len(ids))  # back to the template's opening
        logp = torch.log_softmax(logits, dim=-1)[self.end_id].item()
        self.last_ms = (time.perf_counter() - t0) * 1000
        return logp / math.log(10)


def load_text_turn_model(name: str) -> TextTurnModel | None:
    """The configured model, or None (``none``, or it failed: one warning)."""
    if name.lower() == "none":
        return None
    try:
        return TextTurnModel.load(name)
    except (VoiceAgentError, OSError, ValueError) as e:
        logger.warning("text end-of-turn model %r unavailable, the words are read by their "
                       "punctuation alone: %s", name, e)
        return None
