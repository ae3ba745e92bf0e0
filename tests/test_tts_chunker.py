"""The chunker: chunks joined equal the normalised text, protected spans are never split,
the first chunk comes early, and every chunk maps back to answer characters and tokens."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voice_agent.tts.chunker import Chunker, ChunkerConfig
from voice_agent.tts.normalize import normalize

WORDS = ["sure", "the", "answer", "is", "Paris", "because", "we", "can", "see", "it", "Tom's"]
# Spans that must never be cut: numbers, decimals, abbreviations, times, dates, money,
# formulas in every delimiter, markdown constructs, special tokens.
PROTECTED = [
    "42", "3.14", "1,234,567", "-5", "21st", "e.g.", "Dr.", "U.S.", "i.e.", "3:30 pm", "10:05",
    "March 3, 2024", "4 July 1990", "2024-03-15", "$5.50", "$1.5 million", "5 kg", "50%",
    "$x + y = 2$", "$\\frac{1}{2}$", "\\(a \\times b\\)", "\\[\\sqrt{2}, x\\]", "$$a, b. c$$",
    "\\boxed{42}", "**bold, text.**", "*it is*", "`code, x`", "[the docs, here](http://a.b/c)",
    "https://example.com/a.b", "<|im_end|>", "<think>a, b. c</think>", "~~x, y~~", "3-5",
    "1/2", "2x", "1920x1080", "1990s", "v1.2.3", "a@b.com", "9am", "No. 5", "#1", "10–20",
]
CLAUSE = [",", ";", ":"]
SENTENCE = [".", "!", "?"]


@st.composite
def answers(draw, newlines: bool = True):
    """(text, protected spans, fragments): fragments separated by spaces (or line
    breaks), punctuation attached to the fragment before it."""
    parts: list[tuple[str, str]] = []
    if not newlines:  # a number first would read as a markdown list item ("42. Sure")
        parts.append(("word", draw(st.sampled_from(WORDS))))
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["word"] * 4 + ["protected"] * 3 + ["clause", "sentence"]))
        pool = {"word": WORDS, "protected": PROTECTED, "clause": CLAUSE, "sentence": SENTENCE}
        parts.append((kind, draw(st.sampled_from(pool[kind]))))
    text, spans, frags = "", [], []
    for kind, frag in parts:
        if text and kind not in ("clause", "sentence"):
            text += draw(st.sampled_from([" ", " ", " ", "\n", "\n\n"] if newlines else [" "]))
        if kind == "protected":
            spans.append((len(text), len(text) + len(frag)))
        text += frag
        frags.append((kind, len(text)))
    return text, spans, frags


@st.composite
def splits(draw, text: str) -> list[str]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=len(text)))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def run_chunker(pieces: list[str], config: ChunkerConfig | None = None):
    chunker = Chunker(config)
    chunks = []
    for i, piece in enumerate(pieces):
        chunks += chunker.push(piece, i)
    return chunks + chunker.flush()


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(data=st.data())
def test_chunks_joined_equal_the_normalised_text(data) -> None:
    text, _, _ = data.draw(answers())
    pieces = data.draw(splits(text))
    chunks = run_chunker(pieces)
    assert " ".join(c.text for c in chunks) == normalize(text)
    assert all(c.text and c.text == c.text.strip() for c in chunks)


@SETTINGS
@given(data=st.data())
def test_no_chunk_boundary_inside_a_protected_span(data) -> None:
    text, spans, _ = data.draw(answers())
    chunks = run_chunker(data.draw(splits(text)))
    for c in chunks:
        for start, end in spans:
            assert not start < c.char_end < end, (text[start:end], c)


@SETTINGS
@given(data=st.data())
def test_chunks_are_contiguous_and_cover_the_tokens(data) -> None:
    text, _, _ = data.draw(answers())
    pieces = data.draw(splits(text))
    chunks = run_chunker(pieces)
    token_ends = [sum(len(p) for p in pieces[:i + 1]) for i in range(len(pieces))]
    assert chunks[0].char_start == 0 if chunks else True
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.char_end == b.char_start
        assert a.token_end - 1 <= b.token_start <= a.token_end
    for c in chunks:
        # the tokens are exactly those overlapping the chunk's characters
        expected = [i for i, end in enumerate(token_ends)
                    if end > c.char_start and end - len(pieces[i]) < c.char_end]
        assert (c.token_start, c.token_end) == (expected[0], expected[-1] + 1)
        assert c.token_ends == tuple(token_ends[c.token_start:c.token_end])
        chars, tokens = c.heard(1.0)
        assert chars == c.char_end
        assert tokens == sum(1 for end in token_ends if end <= c.char_end)


@SETTINGS
@given(data=st.data())
def test_first_chunk_ends_at_the_fourth_word_or_first_clause(data) -> None:
    text, _, frags = data.draw(answers(newlines=False))
    chunks = run_chunker(data.draw(splits(text)))
    words = 0
    expected = len(text)
    for i, (kind, end) in enumerate(frags):
        attached = i + 1 < len(frags) and frags[i + 1][0] in ("clause", "sentence")
        if kind not in ("clause", "sentence"):
            words += normalize(text[frags[i - 1][1] if i else 0:end]) != ""
        if attached:
            continue  # punctuation still to come before the space
        start = frags[i - 1][1] if i else 0
        last = normalize(text[start:end])[-1:]
        ends_clause = kind in ("clause", "sentence") or (last != "" and last in ",;:.!?")
        if words and (words >= 4 or ends_clause):
            expected = end
            break
    assert chunks[0].char_end == expected, (text, chunks[0])


def test_first_chunk_early_then_longer_chunks() -> None:
    text = ("Sure, I can help with that. The capital of France is Paris, a city on the "
            "Seine. It has about 2,100,000 people, and it is famous for art.")
    tokens = re.findall(r"\s*\S+", text)
    chunks = run_chunker(tokens)
    assert [c.text for c in chunks] == [
        "Sure,", "I can help with that.",
        "The capital of France is Paris, a city on the Seine.",
        "It has about two million, one hundred thousand people, and it is famous for art.",
    ]
    no_clause = run_chunker(re.findall(r"\s*\S+", "one two three four five six seven"))
    assert no_clause[0].text == "one two three four"


def test_long_run_on_is_cut_at_max_words() -> None:
    text = " ".join(["word"] * 100)
    chunks = run_chunker(re.findall(r"\s*\S+", text), ChunkerConfig(max_words=30))
    assert [len(c.text.split()) for c in chunks] == [4, 30, 30, 30, 6]


def test_heard_is_proportional_and_rounds_down_to_whole_units_and_tokens() -> None:
    pieces = ["The", " answer", " is", " 42", ".", " More"]
    chunks = run_chunker(pieces)
    first = chunks[0]  # "The answer is forty-two." from " 42" + "." at chars 0..17
    assert first.text == "The answer is forty-two."
    assert (first.char_start, first.char_end, first.token_start, first.token_end) == (0, 17, 0, 5)
    assert first.heard(0.0) == (0, 0)
    # 9/24 of the audio: 9 spoken characters "The answe": only "The" is whole
    assert first.heard(9 / 24) == (3, 1)
    # "The answer is forty-tw": the number is not heard until all of it is
    assert first.heard(22 / 24) == (13, 3)
    assert first.heard(23 / 24) == (16, 4)  # "forty-two" heard, the period not yet
    assert first.heard(1.0) == (17, 5)


def test_special_tokens_and_thoughts_do_not_become_chunks() -> None:
    pieces = ["<think>", "\nlet me", " think.\n", "</think>", "\n\n", "Yes", ",", " it", " is",
              ".", "<|im_end|>"]
    chunks = run_chunker(pieces)
    assert [c.text for c in chunks] == ["Yes,", "it is."]
    assert chunks[0].token_start == 0  # the thoughts map into the first chunk's span
    # the last chunk covers the end-of-turn token: hearing it all keeps every token
    assert (chunks[-1].char_end, chunks[-1].token_end) == (len("".join(pieces)), len(pieces))
    assert chunks[-1].heard(0.99) == (42, 9)  # "it is" of "it is.": tokens up to " is"


def test_five_thousand_characters_stream_with_flat_buffers() -> None:
    sentence = ("The value of $x^2$ is 3.14 at 3:30 pm, and **Dr. Smith** paid $5.50 for "
                "it on March 3, 2024. ")
    text = (sentence * 60)[:5000]
    chunker = Chunker()
    held = []
    n = 0
    for i, piece in enumerate(re.findall(r"\s*\S+", text)):
        n += len(chunker.push(piece, i))
        held.append((chunker.held_chars, chunker.held_tokens))
    n += len(chunker.flush())
    assert n > 60
    assert max(h[0] for h in held) < 700  # the text since the last cut, in batches of 256
    assert max(h[1] for h in held) < 120


def test_tokens_out_of_order_are_refused() -> None:
    chunker = Chunker()
    chunker.push("a", 3)
    try:
        chunker.push("b", 1)
    except ValueError as e:
        assert "order" in str(e)
    else:
        raise AssertionError("a token index going backwards must be refused")
