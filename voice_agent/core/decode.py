"""Small decoding pieces shared by the engine and the baselines: token choice, the control
decision, streaming detokenisation and the engine's options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from voice_agent.errors import VoiceAgentError

DEFAULT_CAPACITY: dict[str, int] = {
    "prompt": 4096,        # system + history + the opening of the user turn
    "listen": 1024,        # this turn's user words
    "think_open": 64,
    "thoughts": 4096,
    "writer_split": 64,
    "answer": 2048,
    "question": 256,       # the control question, cleared after each use
}


COMPILE_CHOICES = ("auto", "off", "on", "regional")


class CompileError(VoiceAgentError):
    """The compiled step cannot run here (no C++ compiler, an unsupported model or precision)."""


def normalize_compile(value: str | bool | None) -> str:
    """The ``compile`` setting as "auto", "off", "on" or "regional" (booleans and yes/no
    accepted).

    auto: on where the model runs on CUDA (there the step becomes a CUDA graph, and kernel
    launches are what a decode step costs), off on a CPU, where the compile takes minutes
    and pays only at short contexts (docs/performance.md). regional: one decoder-layer
    graph for all layers: a fraction of the compile, a smaller gain."""
    if isinstance(value, bool):
        return "on" if value else "off"
    v = str(value or "auto").strip().lower()
    v = {"true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "0": "off"}.get(v, v)
    if v not in COMPILE_CHOICES:
        raise CompileError(f"engine.compile must be one of {', '.join(COMPILE_CHOICES)}, "
                           f"got {value!r}")
    return v


@dataclass(frozen=True)
class Sampling:
    """Optional seeded sampling; ``temperature <= 0`` means greedy."""

    temperature: float = 0.7
    top_k: int = 20
    seed: int = 0


@dataclass(frozen=True)
class EngineConfig:
    """Options of the async engine and the baselines (budgets count tokens)."""

    # tokens each KV block may hold; the arena is allocated once at this size
    capacity: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CAPACITY))
    # Steps between control questions (reference: 20). 0: never ask; the writer starts when
    # the thoughts end (or after max_writer_wait). For a model whose answers are one
    # sentence after a last line of thoughts, each question (a prefill of ~28 tokens here,
    # ~3 decode steps) costs more than it can win (embedded-thinker's model card).
    control_every: int = 20
    max_listen_thoughts: int = 256   # thought tokens allowed while the user still speaks
    max_thoughts: int = 2048         # thinking ends after this many thought tokens
    max_answer: int = 1024           # the writer stops after this many answer tokens
    refresh_writer_split: bool = True  # re-encode the split when a paragraph starts, so it
                                       # was computed with the newest thoughts in view
    # Steps the writer may sit idle after the user's turn ended (before its first token or
    # between paragraphs) until it is let go without a "yes". A small model's yes/no is
    # close to noise, and a voice cannot stay silent while the thinker runs to its budget.
    # None: the pure method, the control question alone decides.
    max_writer_wait: int | None = None
    # A "yes" also needs P(yes) of at least this. 0: yes wins when P(yes) > P(no). A model
    # taught the question can still be sure too early (embedded-thinker: a yes at 0.9 cost
    # counting answers; its model card, "The control question"), so its manifest entry sets a bar.
    control_min_yes: float = 0.0
    # Append ``layout.TURN_END_NOTE`` to the user's words when the turn ends (async engine
    # and baselines alike), for a model taught to think while listening and to finish its
    # thoughts only once the note is there (embedded-thinker v3). Off: the prompt is exactly
    # the chat template's.
    mark_turn_end: bool = False
    # Thoughts written while the user speaks are a draft: each time new words arrive (the
    # turn-end note too), the thinker re-reads the draft with every word heard so far in one
    # prefill and keeps its longest prefix that it would write again now (speculative
    # decoding with its own earlier thoughts as the draft). Greedy, the thoughts after the
    # turn are then exactly think mode's, and every kept token is thinking done while the
    # user spoke. For a model that makes up the rest of a half-heard question
    # (embedded-thinker); a model that thinks well on partial words can keep its draft as is.
    check_listen_thoughts: bool = False
    # A re-read costs two forward passes, and on a CPU that shares its cores with the
    # recogniser, re-reading at every piece left the thinker almost no steps (spoken
    # navigate: 19 draft tokens in 10 s of speech). So new words trigger one only once the
    # draft grew by this many tokens since it was last read (the tokens written since saw
    # the new words anyway), or when it is paused (it ended a paragraph, or its thoughts,
    # on what it had heard). The end of the turn always re-reads: that keeps the exactness.
    check_listen_every: int = 16
    # Where the re-read thinker chooses another token than the draft, the check guesses
    # where the draft resumes after it (core/draft.py) and reads on, up to this many times a
    # check (and not after two guesses in a row that failed at once); each guess costs a
    # read of a few tokens first. 0: keep the prefix before the first difference only.
    # Found in spoken counting: "Counting items. a bed: 1, ..." turned into "Counting
    # objects." when the question came, and 150 thought tokens went. Exact either way;
    # on a 2-core CPU a wash for spoken latency (the adapter's model card).
    draft_repairs: int = 4
    sampling: Sampling | None = None   # None: greedy
    eager_attention: bool = False      # the slow twin, for checks
    # auto | off | on | regional: decode steps through one torch.compile graph
    # (core/compiled.py). auto: on CUDA only (a CUDA graph); on a CPU the compile costs
    # minutes at start-up. regional: one layer's graph for all layers (less compile, less gain).
    compile: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "compile", normalize_compile(self.compile))
        # The answer block is never windowed (core/window.py): an answer budget it cannot
        # hold would end answers by capacity, silently. Refuse it here, by name.
        room = dict(self.capacity).get("answer")
        if room is not None and self.max_answer > room:
            raise ValueError(f"max_answer={self.max_answer} does not fit the answer block "
                             f"(capacity.answer={room}); lower one or raise the other")


def pick_tokens(logits: torch.Tensor, bias: torch.Tensor, sampling: Sampling | None,
                generator: torch.Generator | None) -> list[int]:
    """(B, V) fp32 logits + (B, V) additive bias (-inf on forbidden ids) -> B token ids.

    The only device-to-host copy of a step is the final ``tolist``.
    """
    logits = logits + bias
    if sampling is None or sampling.temperature <= 0:
        return logits.argmax(-1).tolist()
    logits = logits / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0].tolist()


def forbid_bias(forbidden: set[int], vocab_size: int, device: torch.device | str) -> torch.Tensor:
    bias = torch.zeros(vocab_size, dtype=torch.float32, device=device)
    ids = [i for i in forbidden if i < vocab_size]
    if ids:
        bias[ids] = float("-inf")
    return bias


def control_decision(logits: torch.Tensor, yes_ids: Sequence[int],
                     no_ids: Sequence[int]) -> tuple[float, float, bool]:
    """P(yes) and P(no) as log-sum-exp over their variants at the next position.

    Returns (p_yes, p_no, p_yes > p_no).
    """
    logp = torch.log_softmax(logits.float().reshape(-1), -1)
    ly = torch.logsumexp(logp[list(yes_ids)], 0)
    ln = torch.logsumexp(logp[list(no_ids)], 0)
    p_yes, p_no = float(ly.exp()), float(ln.exp())
    return p_yes, p_no, bool(ly > ln)


class TextStream:
    """Token ids in, text pieces out, never splitting a multi-byte character.

    The concatenation of every piece returned equals the decoded ids.
    """

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self.ids: list[int] = []
        self._base = 0      # ids before this index are fully emitted
        self._printed = 0   # characters of decode(ids[_base:]) already emitted
        self.text = ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tok.decode(self.ids[self._base:], skip_special_tokens=False)
        if text.endswith("\ufffd"):
            return ""
        piece = text[self._printed:]
        self._printed = len(text)
        if len(self.ids) - self._base > 24:  # keep each decode short
            self._base, self._printed = len(self.ids), 0
        self.text += piece
        return piece

    def drop_front(self, k: int) -> int:
        """Forget the first ``k`` ids (a capacity window); ``text`` keeps all that was said.

        Pieces already emitted stay emitted: when the cut falls inside the ids still being
        detokenised, what they printed is re-counted over the ids that remain.
        """
        k = max(0, min(k, len(self.ids)))
        self.ids = self.ids[k:]
        if k <= self._base:
            self._base -= k
        else:
            self._base = 0
            self._printed = len(self.tok.decode(self.ids, skip_special_tokens=False).rstrip("\ufffd"))
        return k


def ends_paragraph(tail: str, piece: str) -> bool:
    """True when ``piece`` completes a blank line ("\\n\\n") after text ``tail``."""
    return "\n\n" in (tail[-1:] + piece)


class DecoderBase:
    """What every decoder (the async Engine and the baselines) offers besides its commands:
    its text streams, whether it is done, and a warm-up. Each keeps ``model``, ``answer``,
    ``thoughts`` and ``finished``."""

    model: torch.nn.Module
    answer: TextStream
    thoughts: TextStream
    finished: bool

    @property
    def done(self) -> bool:
        return self.finished

    @property
    def answer_text(self) -> str:
        return self.answer.text

    @property
    def thoughts_text(self) -> str:
        return self.thoughts.text

    def warm_up(self) -> None:
        """One small forward pass before the clock starts: first calls pay for allocation
        and kernel selection, which is start-up cost, not a turn's latency. Without a step
        plan the model runs plain causal attention, so no KV block is touched."""
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([[0, 1, 2]], device=device))
