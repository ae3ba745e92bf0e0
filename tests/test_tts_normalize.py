"""Text normalisation for speech: a table of inputs and the exact words the voice gets."""

from __future__ import annotations

import re

import pytest

from voice_agent.tts.latex import speak_latex
from voice_agent.tts.normalize import normalize

CASES = [
    # numbers
    ("The answer is 42.", "The answer is forty-two."),
    ("We had 1,234,567 users.", "We had one million, two hundred and thirty-four thousand, "
                                "five hundred and sixty-seven users."),
    ("Pi is about 3.14159.", "Pi is about three point one four one five nine."),
    ("I have -5 apples and +3 pears.", "I have minus five apples and plus three pears."),
    ("In 1999 it rained.", "In nineteen ninety-nine it rained."),
    ("She came 21st, then 2nd and 3rd.", "She came twenty-first, then second and third."),
    ("It was in the 1990s and the 80s.", "It was in the nineteen nineties and the eighties."),
    ("About 3-5 times, or 10–20.", "About three to five times, or ten to twenty."),
    ("One 1/2 and 3/4 and 2/3.", "One one half and three quarters and two thirds."),
    ("A 1920x1080 screen, 2x faster.",
     "A nineteen twenty by one thousand and eighty screen, two times faster."),
    ("Version 3.11.2 is out.", "Version three point eleven point two is out."),
    ("Ratio 16:9.", "Ratio sixteen to nine."),
    ("H2O and mp3.", "H two O and mp three."),
    ("Go to No. 5 or #1.", "Go to number five or number one."),
    # units and percentages
    ("It weighs 5 kg and is 10km away.", "It weighs five kilograms and is ten kilometres away."),
    ("1 kg, 50% done, 2.5 GB.", "one kilogram, fifty percent done, two point five gigabytes."),
    ("It is -5°C and 20 mph.", "It is minus five degrees Celsius and twenty miles per hour."),
    ("It took 300 ms at 3 GHz.", "It took three hundred milliseconds at three gigahertz."),
    # money
    ("It costs $5.50.", "It costs five dollars and fifty cents."),
    ("$1 and $2, or $0.99.", "one dollar and two dollars, or ninety-nine cents."),
    ("That is $1.5 million.", "That is one point five million dollars."),
    # a math delimiter after the amount ends the money, as a space before words does
    ("sure $1.5 million \\(a \\times b\\) sure", "sure one point five million dollars a times b sure"),
    ("Pay €20 or £3 or 100 USD.", "Pay twenty euros or three pounds or one hundred dollars."),
    ("$2,500 each.", "two thousand, five hundred dollars each."),
    # times and dates
    ("Meet at 3:30 pm or 10:05.", "Meet at three thirty p m or ten oh five."),
    ("It is 12:00, not 14:00.", "It is twelve o'clock, not fourteen hundred."),
    ("At 6 PM.", "At six p m."),
    ("Wake at 9am.", "Wake at nine a m."),
    ("On March 3, 2024 we met.", "On March third, twenty twenty-four we met."),
    ("Due 2024-03-15.", "Due March fifteenth, twenty twenty-four."),
    ("Born 4 July 1990.", "Born the fourth of July, nineteen ninety."),
    ("By 12/25/2023 at most.", "By December twenty-fifth, twenty twenty-three at most."),
    # abbreviations
    ("Dr. Smith and Mr. Jones.", "Doctor Smith and Mister Jones."),
    ("Fruit, e.g. apples, i.e. food.", "Fruit, for example apples, that is food."),
    ("The U.S. team won.", "The U S team won."),
    ("Cats vs. dogs.", "Cats versus dogs."),
    # LaTeX
    ("So $\\frac{1}{2}$ of it.", "So one half of it."),
    ("Then $x^2 + y^2 = z^2$ holds.", "Then x squared plus y squared equals z squared holds."),
    ("Here \\(a \\times b\\) and \\[\\sqrt{2}\\].", "Here a times b and the square root of two."),
    ("The answer is \\boxed{42}.", "The answer is forty-two."),
    ("$$E = mc^2$$", "E equals m c squared"),
    ("We get $2^{10}$ and $\\sqrt[3]{27}$.",
     "We get two to the power of ten and the cube root of twenty-seven."),
    ("So $\\frac{a+b}{c}$ wins.", "So a plus b over c wins."),
    ("$3 \\times 4 = 12$", "three times four equals twelve"),
    # markdown
    ("# Title\n\nSome **bold** and *italic* text.", "Title. Some bold and italic text."),
    ("Steps:\n- one\n- two\n", "Steps: one. two."),
    ("Items:\n1. First\n2. Second", "Items: one, First. two, Second"),
    ("> quoted text", "quoted text"),
    ("Use [the docs](http://x.com/a) and ![a cat](cat.png).", "Use the docs and a cat."),
    ("Call `my_func()` now.", "Call my func now."),
    ("Code:\n```python\nprint('hi')\n```\nDone.", "Code: Python code skipped. Done."),
    ("~~old~~ new", "old new"),
    ("a <b>bold</b> word", "a bold word"),
    # URLs and addresses
    ("See https://docs.python.org/3/library/re.html for more.", "See docs.python.org for more."),
    ("Visit www.example.org today.", "Visit example.org today."),
    ("Mail john@example.com!", "Mail john at example.com!"),
    # special tokens and thoughts
    ("<think>hmm, let me think.</think>The answer<|im_end|>", "The answer"),
    ("Hello<|endoftext|> there", "Hello there"),
    ("Fine.</think> Really.", "Fine. Really."),
    ("<think>never closed", ""),
    # symbols
    ("A & B, 3 - 2 = 1", "A and B, three minus two equals one"),
    ("Well — maybe.", "Well, maybe."),
]


@pytest.mark.parametrize(("text", "spoken"), CASES, ids=[c[0][:30] for c in CASES])
def test_normalisation_table(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("text", [
    "<|im_start|>assistant\nHi<|im_end|>", "<think>\nx\n</think>\n\nOk.", "a<|x|>b</think>",
    "**bold `code` $x$**", "[link](http://a.b) <br/> ```\ncode\n```",
])
def test_no_markup_or_special_token_reaches_the_voice(text: str) -> None:
    spoken = normalize(text)
    assert not re.search(r"<\|?|\|>|think>|\*\*|`|\$|\\|\[|\]\(", spoken), spoken


def test_unknown_latex_commands_are_read_without_symbols() -> None:
    assert speak_latex(r"\foo{x} + \alpha") == "foo x plus alpha"
    assert speak_latex(r"\int_0^1 x\,dx") == "the integral from zero to one of x d x"
