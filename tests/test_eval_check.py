"""The answer checker: a table of spoken-style answers, golds and verdicts."""

from __future__ import annotations

import pytest

from voice_agent.eval.check import check, clock_time, infer_kind, words_to_number

ABC = ["orange ball", "white ball", "blue ball"]
DATES = ["05/01/2021", "02/23/2021", "03/11/2021"]

# (answer as said, gold, kind or None, choices or None, expected correct, expected prediction)
CASES = [
    # numbers: digits, words, boxed, the last one said
    ("You have six musical instruments.", "6", None, None, True, "6"),
    ("There are 3 items.", "three", None, None, True, "3"),
    ("I count twelve objects in total.", "12", None, None, True, "12"),
    ("You have twenty-one cats.", "21", None, None, True, "21"),
    ("That makes a hundred and five.", "105", None, None, True, "105"),
    ("First 2, then 3 more, so 5.", "5", None, None, True, "5"),
    ("The answer is 7.", "8", None, None, False, "7"),
    ("The answer is \\boxed{42}.", "42", None, None, True, "42"),
    ("It comes to 1,250 dollars.", "1250", None, None, True, "1250"),
    ("Half of it: 0.5", "1/2", "number", None, True, "0.5"),
    ("I am not sure.", "4", None, None, False, None),
    ("Nine.", "9", None, None, True, "9"),
    ("There are a total of eleven vegetables.", "11", None, None, True, "11"),
    ("Seventeen", "17", None, None, True, "17"),
    # expressions through math-verify
    ("So x equals \\boxed{\\frac{1}{2}}.", "0.5", "math", None, True, "\\frac{1}{2}"),
    ("The result is \\boxed{2\\sqrt{2}}.", "\\sqrt{8}", "math", None, True, "2\\sqrt{2}"),
    ("The result is \\boxed{3}.", "\\frac{6}{2}", "math", None, True, "3"),
    ("The result is \\boxed{4}.", "\\frac{6}{2}", "math", None, False, "4"),
    # yes / no and True / False are one answer
    ("Yes, you return to the starting point.", "True", None, None, True, "yes"),
    ("No, you end up two steps away.", "False", None, None, True, "no"),
    ("Yes.", "no", None, None, False, "yes"),
    ("True.", "yes", None, None, True, "yes"),
    ("You do not return to the start.", "no", None, None, True, "no"),
    ("False, it is odd.", "False", None, None, True, "no"),
    ("Hmm, let me think about the steps.", "yes", None, None, False, None),
    ("Yeah, you are back where you started.", "yes", None, None, True, "yes"),
    # multiple choice: letters, then option text
    ("The answer is (B).", "B", None, ABC, True, "B"),
    ("Option C.", "C", None, ABC, True, "C"),
    ("A.", "A", None, ABC, True, "A"),
    ("Alice has the blue ball.", "C", None, ABC, True, "C"),
    ("Alice ends with the white ball.", "blue ball.", None, ABC, False, "B"),
    ("She started with the orange ball and ends with the blue ball.", "C", None, ABC, True, "C"),
    ("The date today is 05/01/2021.", "A", None, DATES, True, "A"),
    ("I think it is (b)", "B", None, ABC, False, None),
    ("No idea.", "A", None, ABC, False, None),
    # clock times
    ("It arrives at 3:00.", "3:00", None, None, True, "3:00"),
    ("It is twenty past three.", "3:20", None, None, True, "3:20"),
    ("It ends at a quarter to four.", "3:45", None, None, True, "3:45"),
    ("At half past ten.", "10:30", None, None, True, "10:30"),
    ("The bus arrives at three o'clock.", "3:00", None, None, True, "3:00"),
    ("It ends at 15:20.", "3:20 pm", None, None, True, "3:20 pm"),
    ("It ends at 3:20 am.", "3:20 pm", None, None, False, "3:20 am"),
    ("About three twenty.", "3:20", None, None, True, "3:20"),
    ("At 4:15.", "3:20", None, None, False, "4:15"),
    # free text
    ("The capital of France is Paris.", "Paris", "text", None, True, None),
    ("It is Lyon.", "Paris", "text", None, False, None),
]


@pytest.mark.parametrize("answer,gold,kind,choices,correct,prediction", CASES)
def test_checker_table(answer, gold, kind, choices, correct, prediction):
    v = check(answer, gold, kind, choices)
    assert v.correct is correct, v
    if prediction is not None or v.kind != "text":
        assert v.prediction == prediction, v


def test_table_is_big_enough():
    assert len(CASES) >= 40


def test_kinds_are_inferred_from_the_gold():
    assert infer_kind("7") == "number"
    assert infer_kind("twelve") == "number"
    assert infer_kind("True") == "yesno"
    assert infer_kind("B", ["x", "y"]) == "choice"
    assert infer_kind("3:20") == "time"
    assert infer_kind("\\frac{1}{2}") == "math"
    assert infer_kind("Paris") == "text"


def test_number_words():
    assert words_to_number("ninety-nine") == 99
    assert words_to_number("two thousand and twenty") == 2020
    assert words_to_number("cat") is None
    assert clock_time("noon") == "12:00 pm"


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown answer kind"):
        check("x", "y", "essay")
