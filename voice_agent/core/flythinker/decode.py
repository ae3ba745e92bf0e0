"""Step-wise decoding of a fused pair with two KV caches, the reasoner one step behind.

At each step both models read the same new token y_t: the generator with
``emb(y_t) + thought(t−1)`` (the thought the reasoner finished on the previous step) and
the reasoner to make thought(t) for the next step. Neither waits for the other inside a
step, so they run concurrently: on CPU the reasoner's step runs on its own thread (torch
ops release the GIL; each thread runs its ops with its own intra-op thread count); on
CUDA it is queued on a second stream. Per-token latency then tends to max(G, R) instead
of G + R. ``concurrent=False`` runs the same steps one after the other, for checks.

The prefill is serial (the generator needs every prompt thought), as in the reference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from voice_agent.core.flythinker.fusion import FusedPair, base_decoder


@dataclass
class DecodeResult:
    """Generated ``tokens`` and the wall ``step_ms`` of each decode step (prefill excluded)."""

    tokens: list[int] = field(default_factory=list)
    prefill_ms: float = 0.0
    step_ms: list[float] = field(default_factory=list)


class PairDecoder:
    """Prefill then one token per ``step``; returns the generator's fp32 next-token logits."""

    def __init__(self, pair: FusedPair, concurrent: bool = True, threads: int = 1) -> None:
        self.pair, self.concurrent = pair, concurrent
        p = next(pair.generator.parameters())
        self.device = p.device
        self._cuda = p.device.type == "cuda"
        self._stream = torch.cuda.Stream(device=p.device) if self._cuda and concurrent else None
        # One worker thread for the reasoner; it sets its own torch thread count, as
        # intra-op settings are per thread.
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="reasoner",
                                         initializer=torch.set_num_threads, initargs=(threads,))
                      if concurrent and not self._cuda else None)
        self.reset()

    def reset(self) -> None:
        self.g_cache = DynamicCache(config=self.pair.generator.config)
        self.r_cache = DynamicCache(config=self.pair.reasoner.config)
        self.pending: torch.Tensor | None = None   # (1, 1, d_R) thought of the last token read

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ------------------------------------------------------------ the two halves

    @torch.inference_mode()
    def _reason(self, x: torch.Tensor) -> torch.Tensor:
        out = base_decoder(self.pair.reasoner)(input_ids=x, cache=self.r_cache, use_cache=True)
        return self.pair.thoughts(out.last_hidden_state)                       # (1, n, d_R)

    @torch.inference_mode()
    def _generate(self, x: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
        g = self.pair.generator
        embeds = self.pair.fuse(g.get_input_embeddings()(x), moved)
        out = g(inputs_embeds=embeds, cache=self.g_cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1].float()                                        # (V,)

    def _previous(self) -> torch.Tensor:
        if self.pending is None:  # position 0: no thought yet
            return torch.zeros(1, 1, self.pair.d_r, device=self.device,
                               dtype=self.pair.generator.get_input_embeddings().weight.dtype)
        return self.pending

    # ------------------------------------------------------------ steps

    def prefill(self, ids: Sequence[int]) -> torch.Tensor:
        """Read the prompt; returns the logits for the first new token."""
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        thoughts = self._reason(x)
        moved = torch.cat([self._previous(), thoughts[:, :-1]], dim=1)
        logits = self._generate(x, moved)
        self.pending = thoughts[:, -1:]
        return logits

    def step(self, token: int) -> torch.Tensor:
        """Read one token with both models at once; returns the next-token logits."""
        x = torch.tensor([[token]], dtype=torch.long, device=self.device)
        previous = self._previous()
        if self._pool is not None:
            future = self._pool.submit(self._reason, x)
            logits = self._generate(x, previous)
            self.pending = future.result()
        elif self._stream is not None:
            current = torch.cuda.current_stream(self.device)
            self._stream.wait_stream(current)          # x is ready on the side stream
            with torch.cuda.stream(self._stream):
                thought = self._reason(x)
            logits = self._generate(x, previous)
            current.wait_stream(self._stream)           # the thought is ready for the next step
            thought.record_stream(current)
            self.pending = thought
        else:
            logits = self._generate(x, previous)
            self.pending = self._reason(x)
        return logits

    def generate(self, prompt: Sequence[int], max_new: int, stop_ids: set[int] = frozenset(),
                 pick: Callable[[torch.Tensor], int] | None = None) -> DecodeResult:
        """Greedy (or ``pick``) decoding of up to ``max_new`` tokens; stops after a stop id."""
        pick = pick or (lambda logits: int(logits.argmax()))
        self.reset()
        res = DecodeResult()
        t0 = time.perf_counter()
        tok = pick(self.prefill(prompt))
        res.prefill_ms = _ms(t0, self._cuda)
        while True:
            res.tokens.append(tok)
            if tok in stop_ids or len(res.tokens) >= max_new:
                return res
            t0 = time.perf_counter()
            tok = pick(self.step(tok))
            res.step_ms.append(_ms(t0, self._cuda))


def generator_only(generator: torch.nn.Module, prompt: Sequence[int], max_new: int,
                   stop_ids: set[int] = frozenset()) -> DecodeResult:
    """Plain greedy cached decoding of the generator alone: the latency anchor."""
    device = next(generator.parameters()).device
    cache = DynamicCache(config=generator.config)
    res = DecodeResult()
    cuda = device.type == "cuda"
    x = torch.tensor([list(prompt)], dtype=torch.long, device=device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        tok = int(generator(input_ids=x, cache=cache, use_cache=True,
                            logits_to_keep=1).logits[0, -1].argmax())
        res.prefill_ms = _ms(t0, cuda)
        while True:
            res.tokens.append(tok)
            if tok in stop_ids or len(res.tokens) >= max_new:
                return res
            t0 = time.perf_counter()
            x = torch.tensor([[tok]], dtype=torch.long, device=device)
            tok = int(generator(input_ids=x, cache=cache, use_cache=True,
                                logits_to_keep=1).logits[0, -1].argmax())
            res.step_ms.append(_ms(t0, cuda))


def _ms(t0: float, cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000
