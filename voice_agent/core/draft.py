"""Where a re-read draft goes on after a token the thinker now chooses differently.

The thinker re-reads the thoughts it wrote while the user spoke (``Engine._check_draft``).
Often the new words change a word or two near the start and nothing after: "Counting
items. a bed: 1, total 1. ..." becomes "Counting objects. a bed: 1, ..." once the question
says "objects". Keeping only the prefix before the change throws away the rest, which the
thinker then writes again token by token. Instead the check guesses where the old draft
resumes after the thinker's own token and reads that guess in one prefill, as speculative
decoding reads any draft: only tokens the thinker would choose itself are kept, so the
thoughts stay exactly its greedy ones, and a wrong guess costs one short read.
"""

from __future__ import annotations

from collections.abc import Sequence

# How far (in tokens, either way) the chosen token is looked for in the draft: the thinker
# skipped a few tokens of it, or wrote a few again.
REACH = 4


def resume_at(draft: Sequence[int], pos: int, chosen: int, after_repair: bool) -> int:
    """The thinker chose ``chosen`` where the draft has ``draft[pos]``: the index in
    ``draft`` at which its old tokens go on after ``chosen``.

    - ``chosen`` appears in the draft within ``REACH`` of ``pos``: the draft goes on after
      that occurrence (the nearest; after ``pos`` first);
    - right after a repaired token (``after_repair``): the thinker's phrase is longer than
      the draft's, so ``chosen`` is inserted and ``draft[pos]`` still follows;
    - otherwise a substitution: ``chosen`` takes the place of ``draft[pos]``.
    """
    near = [j for j in range(max(0, pos - REACH), min(len(draft), pos + REACH + 1))
            if j != pos and draft[j] == chosen]
    if near:
        return min(near, key=lambda j: (abs(j - pos), j < pos)) + 1
    return pos if after_repair else pos + 1
