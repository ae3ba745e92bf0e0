"""The two baselines, through plain transformers: think-then-answer and no-think.

They have the engine's interface (``begin_turn``, ``listen``, ``end_of_turn``, ``step``,
``interrupt``, ``reset``, ``state``/``done``/``idle``, ``answer_text``...) so the worker can
drive any mode the same way. A baseline only buffers the words it hears; its prefill runs
in the first ``step`` after ``end_of_turn``, so a clock read before that step includes it
(the reference started the async clock after its prefill; we never do).

- ``think``: the prompt ends with the think opening (``<think>\\n`` on Qwen3); the thinking
  tokens (``LlmThink``) run until the end-of-think token or the thought budget, then the
  think closing is fed and the answer tokens (``LlmWrite``) follow.
- ``nothink``: Qwen3's empty ``<think>\\n\\n</think>\\n\\n``, or the plain chat opening for
  other families; answer tokens only.

Both use the same block texts, tokenisation, forbidden tokens and budgets as the engine,
so the think baseline's thoughts are the engine thinker's, token for token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch
from transformers import DynamicCache

from voice_agent.core.decode import (EngineConfig, DecoderBase, TextStream, forbid_bias,
                                      pick_tokens)
from voice_agent.core.engine import DONE, LISTENING, THINKING, WRITING, load_model
from voice_agent.core.layout import Prompts, shared_prefix
from voice_agent.events import Event, LlmListen, LlmStep, LlmThink, LlmWrite
from voice_agent.trace import SessionClock

MODES = ("think", "nothink")


class Baseline(DecoderBase):
    """Think-then-answer (``mode="think"``) or no-think decoding with a ``DynamicCache``."""

    def __init__(self, model, tokenizer, mode: str = "think", config: EngineConfig | None = None,
                 clock: SessionClock | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"baseline mode must be one of {MODES}, got {mode!r}")
        self.model, self.mode = model, mode
        self.config = config or EngineConfig()
        self.clock = clock or SessionClock()
        self.prompts = Prompts(tokenizer)
        p = next(model.parameters())
        self.device = p.device
        V = model.get_output_embeddings().out_features  # also for quantised heads
        self.bias = {k: forbid_bias(v, V, p.device) for k, v in self.prompts.forbidden().items()}
        self.writer_stop = self.prompts.writer_stop_ids()
        s = self.config.sampling
        self.generator = torch.Generator(device=p.device).manual_seed(s.seed) if s else None
        self.turn = 0
        self.steps = 0
        self._history: tuple[Sequence[dict], str | None] = ((), None)
        self._new_turn_state()

    @classmethod
    def from_pretrained(cls, name: str | None = None, mode: str = "think",
                        config: EngineConfig | None = None, clock: SessionClock | None = None,
                        device: str = "cpu", dtype: torch.dtype = torch.float32) -> Baseline:
        model, tok = load_model(name, device, dtype)
        return cls(model, tok, mode, config, clock)

    # ------------------------------------------------------------ commands

    def begin_turn(self, history: Sequence[dict] = (), system: str | None = None) -> list[Event]:
        self._new_turn_state()
        self.turn += 1
        self._history = (list(history), system)
        self.prompts.prompt_ids(history, system)  # validate now, not at end of turn
        return []

    def listen(self, text: str) -> list[Event]:
        ids = self.prompts.listen_ids(text, first=not self.listen_ids)
        if not ids:
            return []
        self.listen_ids += ids
        return [LlmListen(t=self.clock.now(), text=self.prompts.decode(ids), tokens=len(ids),
                          turn=self.turn)]

    def revise(self, text: str) -> list[Event]:
        """The recogniser corrected words it had sent: until the turn ends, the
        question is ``text`` (nothing was computed from it yet)."""
        ids = self.prompts.listen_ids(text, first=True)
        if self.user_done or not ids or ids == self.listen_ids:
            return []
        keep = shared_prefix(self.listen_ids, ids)
        replaced, self.listen_ids = len(self.listen_ids) - keep, ids
        return [LlmListen(t=self.clock.now(), text=self.prompts.decode(ids[keep:]),
                          tokens=len(ids) - keep, replaced=replaced, turn=self.turn)]

    def end_of_turn(self) -> list[Event]:
        if self.listen_ids and not self.user_done:
            self.user_done, self._feed = True, self._prompt_ids()
            self.cache = DynamicCache(config=self.model.config)
            self.thoughts = TextStream(self.prompts.tok)
            self.answer = TextStream(self.prompts.tok)
            self.answer_token_texts = []
        return []

    def interrupt(self, heard_tokens: int) -> list[Event]:
        """Stop; keep the heard answer text. A later ``end_of_turn`` re-answers from scratch
        with every word heard so far (a plain model cannot keep its answer and listen)."""
        n = max(0, min(int(heard_tokens), len(self.answer.ids)))
        kept = self.answer.ids[:n]
        self.answer = TextStream(self.prompts.tok)
        self.answer_token_texts = [self.answer.push(i) for i in kept]
        self.user_done = self.finished = False
        self._feed = None
        return []

    def reset(self) -> None:
        self._new_turn_state()

    # ------------------------------------------------------------ state

    @property
    def state(self) -> str:
        if self.finished:
            return DONE
        if not self.user_done:
            return LISTENING
        return THINKING if self.thinking else WRITING

    @property
    def idle(self) -> bool:
        return self.finished or not self.user_done

    # ------------------------------------------------------------ decoding

    def step(self) -> list[Event]:
        """One forward pass (the prefill, the think closing, or one token)."""
        if self.idle or self._feed is None:
            return []
        t0, state = time.perf_counter(), self.state
        ids, prefill = self._feed, len(self._feed) > 1
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            out = self.model(input_ids=x, cache=self.cache, use_cache=True, logits_to_keep=1)
        bias = self.bias["thinker" if self.thinking else "writer"][None]
        tok = pick_tokens(out.logits[:, -1].float(), bias, self.config.sampling, self.generator)[0]
        self.steps += 1
        events: list[Event] = [LlmStep(t=self.clock.now(), state="prefill" if prefill else state,
                                       ms=round((time.perf_counter() - t0) * 1000, 3), batch=1,
                                       step=self.steps, turn=self.turn)]
        return events + (self._accept_thought(tok) if self.thinking else self._accept_answer(tok))

    def run(self, question: str, history: Sequence[dict] = (), system: str | None = None,
            max_steps: int = 10_000) -> Iterator[Event]:
        yield from self.begin_turn(history, system)
        yield from self.listen(question)
        yield from self.end_of_turn()
        for _ in range(max_steps):
            if self.done or self.idle:
                break
            yield from self.step()

    def _prompt_ids(self) -> list[int]:
        history, system = self._history
        open_text = (self.prompts.think_open_text() if self.mode == "think"
                     else self.prompts.nothink_open_text())
        self.thinking = self.mode == "think"
        note = self.prompts.turn_end_ids if self.config.mark_turn_end else []
        return (self.prompts.prompt_ids(history, system) + self.listen_ids + note
                + self.prompts.ids(open_text))

    def _accept_thought(self, tok: int) -> list[Event]:
        if tok == self.prompts.end_of_think_id or len(self.thoughts.ids) >= self.config.max_thoughts:
            self.thinking = False
            self._feed = self.prompts.ids(self.prompts.template.think_close)
            return []
        self._feed = [tok]
        piece = self.thoughts.push(tok)
        return [LlmThink(t=self.clock.now(), token=tok, text=piece, step=self.steps, turn=self.turn)]

    def _accept_answer(self, tok: int) -> list[Event]:
        if tok in self.writer_stop or len(self.answer.ids) >= self.config.max_answer:
            self.finished, self._feed = True, None
            return []
        self._feed = [tok]
        self.answer_token_texts.append(self.answer.push(tok))
        return [LlmWrite(t=self.clock.now(), token=tok, text=self.answer_token_texts[-1],
                         step=self.steps, turn=self.turn)]

    def _new_turn_state(self) -> None:
        self.listen_ids: list[int] = []
        self.thoughts = TextStream(self.prompts.tok)
        self.answer = TextStream(self.prompts.tok)
        self.answer_token_texts: list[str] = []
        self.user_done = self.finished = False
        self.thinking = self.mode == "think"
        self._feed: list[int] | None = None
        self.cache: DynamicCache | None = None

