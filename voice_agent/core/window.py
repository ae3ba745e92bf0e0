"""The arena's capacity policy: what gives way when a block fills, so a long conversation
never dies of a full block and the spoken answer is never silently cut.

Each block has a fixed slice of the arena (``core.kv``). What happens when one fills:

- ``prompt`` (system + history): the oldest history messages are left out of the prompt,
  a user/assistant pair at a time, until it fits. Only a system prompt that alone does not
  fit is an error (``KvCapacityError``: a settings problem, not a long conversation).
- ``listen`` (this turn's user words) and ``thoughts``: a *window*. The oldest quarter of
  the block (at least what the new tokens need) is dropped from the front; the kept keys
  are re-rotated to positions 0..n-1 (RoPE composes, so their scores against any query are
  exactly those of keys stored at the new positions). Kept tokens keep the K/V computed with
  the dropped ones in context, the same approximation the method already makes for a
  token's moment. Dropping a quarter at once makes the (cheap) move rare.
- ``answer``: never dropped and never cut by capacity. ``EngineConfig`` refuses a
  ``max_answer`` that does not fit the block, so only the answer budget ends an answer.
- ``think_open``, ``writer_split``, ``question``: fixed texts; checked to fit at start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from voice_agent.core.attention import RopeTables, _rotate
from voice_agent.core.kv import BlockArena, KvCapacityError

WINDOWED = ("listen", "thoughts")
DROP_FRACTION = 4  # a full window drops 1/4 of its capacity at once


def tokens_to_drop(arena: BlockArena, block: str, need: int) -> int:
    """How many front tokens of ``block`` to drop so that ``need`` more fit (0: they fit)."""
    used, cap = arena.length[block], arena.capacity[block]
    if used + need <= cap:
        return 0
    return min(used, max(used + need - cap, cap // DROP_FRACTION))


def drop_front(arena: BlockArena, rope: RopeTables, block: str, k: int) -> None:
    """Forget the first ``k`` tokens of ``block``; the rest move to positions 0..n-k-1.

    Keys are rotated by -k (one rotation for every kept key of every layer), values are
    only moved.
    """
    n = arena.length[block]
    if k <= 0:
        return
    if k > n:
        raise ValueError(f"cannot drop {k} tokens of block '{block}' holding {n}")
    s = arena.start[block]
    kept = arena.kv[:, :, :, s + k:s + n].clone()  # (layers, 2, kv_heads, n-k, D)
    cos, sin = rope([-k])  # (1, D): the same rotation for every kept position
    kept[:, 0] = _rotate(kept[:, 0], cos, sin)
    arena.kv[:, :, :, s:s + n - k] = kept
    arena.length[block] = n - k


def fit_history(render: Callable[[Sequence[dict], str | None], list[int]],
                history: Sequence[dict], system: str | None,
                capacity: int) -> tuple[list[int], int]:
    """Token ids of the prompt with as much recent history as fits in ``capacity``.

    ``render(history, system)`` gives the prompt's ids. Returns (ids, messages left out).
    The oldest messages go first, a user/assistant pair at a time, so the history never
    starts with an answer to a question it no longer holds.
    """
    history = list(history)
    ids = render(history, system)
    if len(ids) <= capacity:
        return ids, 0
    # Where the kept history may start: after a whole user/assistant pair, or at the end.
    cuts = [i for i in range(1, len(history)) if history[i].get("role") == "user"]
    cuts.append(len(history))
    # Fewer messages never render longer: binary search for the earliest cut that fits
    # (each render runs the chat template, and a long history has many cuts).
    lo, hi = 0, len(cuts) - 1
    best = render(history[cuts[hi]:], system)
    if len(best) <= capacity:
        while lo < hi:
            mid = (lo + hi) // 2
            trial = render(history[cuts[mid]:], system)
            if len(trial) <= capacity:
                hi, best = mid, trial
            else:
                lo = mid + 1
    ids, dropped = best, cuts[hi]
    if len(ids) > capacity:
        raise KvCapacityError(
            f"KV block 'prompt' is full: the system prompt alone is {len(ids)} tokens and the "
            f"block holds {capacity}; shorten the system prompt or raise core.capacity.prompt")
    return ids, dropped


def check_fixed(arena: BlockArena, sizes: dict[str, int]) -> None:
    """Refuse at start a block too small for its fixed text (``think_open``...)."""
    for block, n in sizes.items():
        if n > arena.capacity[block]:
            raise KvCapacityError(f"KV block '{block}' holds {arena.capacity[block]} tokens but "
                                  f"its fixed text needs {n}; raise core.capacity.{block}")


def arena_occupancy(arena: BlockArena) -> dict[str, float]:
    """Fraction of each block in use, and of the whole arena (key ``total``)."""
    out = {b: arena.length[b] / arena.capacity[b] for b in arena.capacity}
    out["total"] = arena.used_tokens() / arena.total_capacity
    return out


__all__ = ["WINDOWED", "arena_occupancy", "check_fixed", "drop_front", "fit_history",
           "tokens_to_drop"]
