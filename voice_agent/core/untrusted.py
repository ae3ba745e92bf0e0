"""Text from outside (speech, history, profiles, config files, the network) as plain text.

A tokenizer's default ``encode`` turns the *characters* ``<|im_end|>`` into the control
token that ends a turn, so words a user speaks or types could close their own turn and
open a system one. Everything that did not come from our own templates goes through
``encode_untrusted``: control markers in it stay ordinary characters.

Two layers, because one is not enough:

- ``split_special_tokens=True`` stops the tokenizer from matching *special* added tokens
  (``<|im_start|>``, ``<|eot_id|>``, ``<|start_header_id|>``, ...).
- It does not stop *non-special* added tokens: Qwen3's ``<think>``/``</think>`` (and its
  tool tokens) are added with ``special=False`` and still match. For those the text is cut
  inside each marker (after its first character) and the pieces are encoded apart, so no
  piece holds a whole marker. All supported families (Qwen3, SmolLM2, Llama 3) use
  byte-level BPE without a prefix space, so the pieces' ids still decode to the exact text.

The result is checked: if any control id survives, a ``ModelError`` names the tokenizer
rather than letting the text through.
"""

from __future__ import annotations

from typing import Any

from voice_agent.errors import ModelError


def control_ids(tokenizer: Any) -> set[int]:
    """Every id plain text must never produce: all added tokens (special or not) and the
    tokenizer's bos/eos/pad/unk."""
    out = {int(i) for i in tokenizer.added_tokens_decoder}
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if (i := getattr(tokenizer, attr, None)) is not None:
            out.add(int(i))
    return out


def encode_untrusted(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as plain text: no control token, whatever the text says.

    Use it for every string that did not come from the project's own templates. Benign
    text encodes exactly as ``tokenizer.encode(text, add_special_tokens=False)`` would.
    """
    text = valid_text(text)
    if not text:
        return []
    forbidden = control_ids(tokenizer)
    ids = _plain(tokenizer, text)
    if not forbidden.intersection(ids):
        return ids
    # A non-special added token matched: cut every marker after its first character.
    markers = [t.content for t in tokenizer.added_tokens_decoder.values() if len(t.content) > 1]
    cuts = sorted({i + 1 for m in markers for i in _find_all(text, m)})
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]) if b > a]
    ids = [i for piece in pieces for i in _plain(tokenizer, piece)]
    if leaked := forbidden.intersection(ids):
        raise ModelError(f"tokenizer {type(tokenizer).__name__} still makes control ids "
                         f"{sorted(leaked)[:5]} from plain text; it cannot take outside text safely")
    return ids


def valid_text(text: str) -> str:
    """``text`` with anything that is not valid Unicode replaced by U+FFFD.

    Bytes that were not UTF-8 reach Python as lone surrogates (``surrogateescape``: argv,
    file names; ``\\udcff`` escapes in JSON), and tokenizers refuse those with a
    TypeError. Each bad byte becomes one replacement character.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def _plain(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def _find_all(text: str, marker: str) -> list[int]:
    out, i = [], text.find(marker)
    while i >= 0:
        out.append(i)
        i = text.find(marker, i + 1)
    return out
