"""A fused pair behind the decoder interface the session drives (``--mode fly``).

It is the no-think writer path: the prompt (system text with the user's profile, the
user's words, the empty think block) is read once, then one answer token per ``step``.
There are no explicit thoughts: the reasoner's latents are fused into every generator
step, one step behind and computed concurrently.
"""

from __future__ import annotations

import time

import torch

from voice_agent.core.baselines import Baseline
from voice_agent.core.decode import EngineConfig, pick_tokens
from voice_agent.core.flythinker.decode import PairDecoder
from voice_agent.core.flythinker.fusion import FusedPair
from voice_agent.events import Event, LlmStep
from voice_agent.trace import SessionClock


class FlyDecoder(Baseline):
    """Answers with ``pair``; everything else (turns, listening, barge-in) as no-think."""

    def __init__(self, pair: FusedPair, tokenizer, config: EngineConfig | None = None,
                 clock: SessionClock | None = None, concurrent: bool = True) -> None:
        super().__init__(pair.generator, tokenizer, "nothink", config, clock)
        self.pair = pair
        self.decoder = PairDecoder(pair, concurrent=concurrent)
        self._prefilled = False

    def end_of_turn(self) -> list[Event]:
        was = self.user_done
        events = super().end_of_turn()
        if self.user_done and not was:  # a new answer: both caches start over
            self.decoder.reset()
            self._prefilled = False
        return events

    def step(self) -> list[Event]:
        """The prompt's prefill, or one answer token (both models, concurrently)."""
        if self.idle or self._feed is None:
            return []
        t0, state = time.perf_counter(), self.state
        ids, prefill = self._feed, not self._prefilled
        logits = self.decoder.prefill(ids) if prefill else self.decoder.step(ids[-1])
        self._prefilled = True
        tok = pick_tokens(logits[None], self.bias["writer"][None], self.config.sampling, self.generator)[0]
        self.steps += 1
        events: list[Event] = [LlmStep(t=self.clock.now(), state="prefill" if prefill else state,
                                       ms=round((time.perf_counter() - t0) * 1000, 3), batch=1,
                                       step=self.steps, turn=self.turn)]
        return events + self._accept_answer(tok)

    def warm_up(self) -> None:
        """A prefill and a step of both models (and the reasoner's thread) before the clock."""
        with torch.inference_mode():
            self.decoder.prefill([0, 1, 2])
            self.decoder.step(3)
        self.decoder.reset()
        self._prefilled = False
