"""Blocks, views and prompt templates: what each stream sees, as data.

A *view* is an ordered tuple of block names; a stream reads its view as one ordinary
sequence. ``Layout`` holds the default table (DESIGN.md, the reference's later layout);
``Prompts`` turns a tokenizer's own chat template into the text of each block, for two
template families:

- ``qwen3``: the model has ``<think>``/``</think>`` tokens. The thinker's view reads exactly
  like Qwen3's ``enable_thinking=True`` prompt followed by ``<think>\\n`` and the thoughts.
- ``text``: a chat model without think tokens (SmolLM2): thoughts sit between plain-text
  markers inside the assistant turn, and the thinker ends them with the end-of-turn token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voice_agent.core.untrusted import encode_untrusted
from voice_agent.errors import ModelError

View = tuple[str, ...]
BLOCKS: View = ("prompt", "listen", "think_open", "thoughts", "writer_split", "answer", "question")
_SENTINEL = "\u2063QQQ\u2063"  # user text that no template rewrites, to split a rendering
YES_VARIANTS = ("yes", " yes", "Yes", " Yes", "YES", " YES")
NO_VARIANTS = ("no", " no", "No", " No", "NO", " NO")


@dataclass(frozen=True)
class Layout:
    """Which blocks each stream sees, in order. The last block of a view is the one written."""

    thinker: View = ("prompt", "listen", "think_open", "thoughts")
    writer: View = ("prompt", "listen", "think_open", "thoughts", "writer_split", "answer")
    control: View = ("prompt", "listen", "think_open", "thoughts", "answer", "question")
    # Views used to write the static blocks: each sees only what comes before it.
    listen: View = ("prompt", "listen")
    think_open: View = ("prompt", "listen", "think_open")
    writer_split: View = ("prompt", "listen", "think_open", "thoughts", "writer_split")

    def __post_init__(self) -> None:
        for name in ("thinker", "writer", "control", "listen", "think_open", "writer_split"):
            view = getattr(self, name)
            unknown = [b for b in view if b not in BLOCKS]
            if unknown or len(set(view)) != len(view):
                raise ValueError(f"layout view '{name}' {view}: unknown or repeated blocks {unknown}")


@dataclass(frozen=True)
class Template:
    """The fixed texts around the blocks for one template family."""

    kind: str                # "qwen3" | "text"
    think_open_tail: str     # appended to the chat template's assistant opening
    think_close: str         # ends the thoughts in a finished think-then-answer transcript
    split_note: str          # precedes think_close in the writer's view while thoughts go on
    nothink_tail: str        # the assistant opening of the no-think baseline
    question: str            # the control question; "yes"/"no" is the next token

    @property
    def writer_split(self) -> str:
        return self.split_note + self.think_close


QWEN3 = Template(
    kind="qwen3",
    think_open_tail="<think>\n",
    think_close="</think>\n\n",
    split_note="\n\n[thoughts continue]\n",
    nothink_tail="<think>\n\n</think>\n\n",
    question="\n\nWait, are my private thoughts ahead of the written response by enough to "
             "write one more response paragraph? (yes/no): ",
)

TEXT_MARKERS = Template(
    kind="text",
    think_open_tail="Private thoughts (not shown to the user):\n",
    think_close="\nEnd of private thoughts.\n\nAnswer:\n",
    split_note="\n[thoughts continue]",
    nothink_tail="",
    question="\n\nQuestion to myself: are my private thoughts ahead of the written answer by "
             "enough to write one more answer paragraph? (yes/no): ",
)


# Appended to the user's words when the turn ends, for a model trained to read it
# (``EngineConfig.mark_turn_end``): while the user speaks, the thinker's view holds the words
# heard so far; without a mark a finished question and a half-said one can read the same.
TURN_END_NOTE = "\n(The user has finished speaking.)"


_CLOSING = ",.;:?!"


def join_heard(pieces: Sequence[str]) -> str:
    """Pieces of heard text as one text: one space between words, none before a piece that
    starts with a closing mark (the recogniser may say a held comma or question mark on its
    own, asr/utterance.py)."""
    out = ""
    for piece in pieces:
        piece = piece.strip()
        if piece:
            out += _spaced(piece) if out else piece
    return out


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids ``a`` and ``b`` have in common."""
    return next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _spaced(piece: str) -> str:
    """A stripped, non-empty piece as it follows earlier words."""
    return piece if piece[0] in _CLOSING else " " + piece


class Prompts:
    """Token ids of every block's text for one tokenizer, derived from its chat template."""

    def __init__(self, tokenizer, template: Template | None = None) -> None:
        self.tok = tokenizer
        vocab = tokenizer.get_vocab()
        has_think = "<think>" in vocab and "</think>" in vocab
        self.template = template or (QWEN3 if has_think else TEXT_MARKERS)
        if self.template.kind == "qwen3" and not has_think:
            raise ModelError("the qwen3 template needs <think> and </think> tokens in the vocabulary")
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError("the tokenizer has no chat template; the core needs one to lay out prompts")
        self.end_of_turn_id = self._end_of_turn_id()
        self.think_ids = [vocab[t] for t in ("<think>", "</think>") if t in vocab]
        self.end_of_think_id = vocab["</think>"] if self.template.kind == "qwen3" else self.end_of_turn_id
        self.user_tail = self._render([], None)[1]  # e.g. "<|im_end|>\n<|im_start|>assistant\n"
        self.yes_ids = self._variant_ids(YES_VARIANTS)
        self.no_ids = self._variant_ids(NO_VARIANTS)
        if set(self.yes_ids) & set(self.no_ids):
            raise ModelError(f"yes and no variants share token ids {set(self.yes_ids) & set(self.no_ids)}")

    # ------------------------------------------------------------ texts

    def _render(self, history: Sequence[dict], system: str | None) -> tuple[str, str]:
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": m["role"], "content": m["content"]} for m in history
        ] + [{"role": "user", "content": _SENTINEL}]
        return self._render_messages(msgs)

    def _render_messages(self, msgs: list[dict]) -> tuple[str, str]:
        kwargs = {"enable_thinking": True} if self.template.kind == "qwen3" else {}
        text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kwargs)
        if text.count(_SENTINEL) != 1:
            raise ModelError("cannot split the chat template around the user's message")
        before, after = text.split(_SENTINEL)
        return before, after

    def prompt_text(self, history: Sequence[dict] = (), system: str | None = None) -> str:
        """System and history, then the opening of the new user turn (thoughts are dropped
        from past assistant turns by the chat template, as Qwen3's does)."""
        _check_history(history)
        return self._render(history, system)[0]

    def prompt_ids(self, history: Sequence[dict] = (), system: str | None = None) -> list[int]:
        """The ids of ``prompt_text``, with every message's content and the system text
        encoded as plain text (``encode_untrusted``): only the template's own markup
        becomes control tokens. Each content is wrapped in sentinels before rendering,
        so the template lays it out (and may trim it) but its text is never parsed."""
        _check_history(history)
        msgs = [{"role": "system", "content": system}] if system else []
        msgs += [{"role": m["role"], "content": self._history_content(m)} for m in history]
        wrapped = [{"role": m["role"], "content": f"{_open(i)}{m['content']}{_close(i)}"}
                   for i, m in enumerate(msgs)]
        rest = self._render_messages(wrapped + [{"role": "user", "content": _SENTINEL}])[0]
        ids: list[int] = []
        for i in range(len(msgs)):
            if rest.count(_open(i)) != 1 or rest.count(_close(i)) != 1:
                raise ModelError("the chat template rewrites message content; it cannot be "
                                 "laid out as plain text")
            markup, rest = rest.split(_open(i))
            content, rest = rest.split(_close(i))
            ids += self.ids(markup) + encode_untrusted(self.tok, content)
        return ids + self.ids(rest)

    def _history_content(self, m: dict) -> str:
        # Past thoughts are dropped from assistant turns, as Qwen3's own template does; done
        # here because the template only sees a sentinel-wrapped copy of the content.
        if self.template.kind == "qwen3" and m["role"] == "assistant" and "</think>" in m["content"]:
            return m["content"].split("</think>")[-1].lstrip("\n")
        return m["content"]

    def think_open_text(self) -> str:
        return self.user_tail + self.template.think_open_tail

    @property
    def turn_end_ids(self) -> list[int]:
        """``TURN_END_NOTE``'s ids: what ``EngineConfig.mark_turn_end`` appends to the words."""
        return self.ids(TURN_END_NOTE)

    def nothink_open_text(self) -> str:
        return self.user_tail + self.template.nothink_tail

    # ------------------------------------------------------------ ids

    def ids(self, text: str) -> list[int]:
        """Ids of the project's own template text: markers in it are control tokens.
        Never for outside text; that goes through ``encode_untrusted``."""
        return self.tok.encode(text, add_special_tokens=False)

    def listen_ids(self, text: str, first: bool) -> list[int]:
        """Listen text arrives in pieces, joined as ``join_heard`` joins them. It is the
        user's (speech, typed or network text): always plain text, never control tokens."""
        text = text.strip()
        if not text:
            return []
        return encode_untrusted(self.tok, text if first else _spaced(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    # ------------------------------------------------------------ token sets

    def special_ids(self) -> set[int]:
        """Control tokens no stream should write as text: every special added token, the
        think tokens and the tokenizer's own bos/eos/pad."""
        out = {i for i, t in self.tok.added_tokens_decoder.items() if t.special}
        out |= set(self.think_ids)
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if (i := getattr(self.tok, attr, None)) is not None:
                out.add(int(i))
        return out

    def writer_stop_ids(self) -> set[int]:
        out = {self.end_of_turn_id}
        if self.tok.eos_token_id is not None:
            out.add(int(self.tok.eos_token_id))
        return out

    def forbidden(self) -> dict[str, set[int]]:
        """Forbidden ids per stream: "thinker", "thinker_listening" (may not end its
        thoughts while the user still speaks) and "writer"."""
        special = self.special_ids()
        return {
            "thinker": special - {self.end_of_think_id},
            "thinker_listening": set(special),
            "writer": special - self.writer_stop_ids(),
        }

    def _end_of_turn_id(self) -> int:
        text = self.tok.apply_chat_template(
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": _SENTINEL}], tokenize=False)
        tail = text.split(_SENTINEL, 1)[1]
        ids = self.ids(tail)
        specials = {i for i, t in self.tok.added_tokens_decoder.items() if t.special}
        if ids and ids[0] in specials:
            return ids[0]
        if self.tok.eos_token_id is None:
            raise ModelError("cannot tell which token ends an assistant turn (no eos token)")
        return int(self.tok.eos_token_id)

    def _variant_ids(self, variants: Sequence[str]) -> list[int]:
        """Single-token spellings of the word; if there are none, the first token of each."""
        enc = [self.ids(v) for v in variants]
        single = sorted({e[0] for e in enc if len(e) == 1})
        return single or sorted({e[0] for e in enc if e})


def _open(i: int) -> str:
    return f"\u2063<{i}\u2063"


def _close(i: int) -> str:
    return f"\u2063{i}>\u2063"


def _check_history(history: Sequence[dict]) -> None:
    for m in history:
        if m.get("role") not in ("user", "assistant", "system") or not isinstance(m.get("content"), str):
            raise ValueError(f"history messages need role user/assistant and text content, got {m!r}")
