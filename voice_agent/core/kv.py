"""The block KV arena: one preallocated K/V buffer per layer, split into named blocks.

Each block owns a fixed slice of the arena (its capacity), so ``append``, ``truncate`` and
``clear`` only move the block's length: no other block is copied, nothing is reallocated.
Keys are stored at *block-local* RoPE positions 0..len-1 (a step hands the stock model the
new tokens' positions inside the blocks they are written to, so its RoPE puts them there);
values are stored as computed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from voice_agent.errors import VoiceAgentError


class KvCapacityError(VoiceAgentError):
    """A block ran out of its preallocated room in the KV arena."""


@dataclass(frozen=True)
class ArenaShape:
    """What one layer's K/V looks like: taken from the model config."""

    num_layers: int
    kv_heads: int
    head_dim: int


def arena_dtype(weight_dtype: torch.dtype, device: str | torch.device) -> torch.dtype:
    """The dtype the arena stores K/V in for a model whose activations are ``weight_dtype``.

    On a CPU the arena stays fp32 even under bf16 or int8 weights: attention is a few
    skinny batched products per layer, and oneDNN's bf16 ``bmm`` at those shapes ran 4.6x
    slower than fp32's (profile of the embedded thinker under int8, stop 30), while the
    K/V bytes are small next to the weights. On CUDA it takes the activation dtype.
    """
    if torch.device(device).type == "cpu" and weight_dtype in (torch.bfloat16, torch.float16):
        return torch.float32
    return weight_dtype


class BlockArena:
    """Named blocks in one preallocated K/V buffer of shape (layers, 2, kv_heads, capacity, D).

    Args:
        capacities: block name -> most tokens it may hold (the order fixes the slices).
        shape: layers, kv heads and head dim of the model.
        dtype, device: storage type and place.
    """

    def __init__(self, capacities: Mapping[str, int], shape: ArenaShape, *,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> None:
        if not capacities:
            raise ValueError("an arena needs at least one block")
        self.shape = shape
        self.capacity: dict[str, int] = {}
        self.start: dict[str, int] = {}
        self.length: dict[str, int] = {}
        total = 0
        for name, cap in capacities.items():
            if cap <= 0:
                raise ValueError(f"block {name!r}: capacity must be positive, got {cap}")
            self.capacity[name], self.start[name], self.length[name] = int(cap), total, 0
            total += int(cap)
        self.total_capacity = total
        # (layers, 2, kv_heads, capacity, D): one allocation, known at start.
        self.kv = torch.zeros(shape.num_layers, 2, shape.kv_heads, total, shape.head_dim,
                              dtype=dtype, device=device)
        # Per layer, K and V heads side by side (2 * kv_heads, capacity, D): one scatter
        # stores a step's keys and values (built once: a step is bound by its op count).
        self.layer_kv = [layer.view(2 * shape.kv_heads, total, shape.head_dim)
                         for layer in self.kv.unbind(0)]
        self._spans: dict[tuple[int, int], tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]] = {}

    # ------------------------------------------------------------ index moves

    def reserve(self, block: str, n: int) -> int:
        """Grow ``block`` by ``n`` tokens (to be written by the next forward pass).

        Returns the block-local position of the first new token.
        Raises KvCapacityError naming the block and the sizes when it does not fit.
        """
        used, cap = self.length[block], self.capacity[block]
        if used + n > cap:
            raise KvCapacityError(
                f"KV block '{block}' is full: it holds {used} of {cap} tokens and {n} more "
                f"were asked for; raise its capacity in the core config (core.capacity.{block})"
            )
        self.length[block] = used + n
        return used

    def truncate(self, block: str, n: int) -> None:
        """Keep only the first ``n`` tokens of ``block``."""
        if not 0 <= n <= self.length[block]:
            raise ValueError(f"cannot truncate block '{block}' of {self.length[block]} tokens to {n}")
        self.length[block] = n

    def clear(self, block: str) -> None:
        self.length[block] = 0

    def reset(self) -> None:
        """Empty every block; the memory stays allocated."""
        for name in self.length:
            self.length[name] = 0

    # ------------------------------------------------------------ tensor access

    def write(self, layer: int, block: str, pos: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store (kv_heads, T, D) keys/values at block-local positions pos..pos+T-1."""
        T = keys.shape[-2]
        assert pos + T <= self.length[block], (
            f"write of {T} tokens at {pos} past block '{block}' length {self.length[block]}")
        s = self.start[block] + pos
        self.kv[layer, 0, :, s:s + T] = keys
        self.kv[layer, 1, :, s:s + T] = values

    def keys(self, layer: int, block: str) -> torch.Tensor:
        """(kv_heads, len, D) view of the stored keys; no copy."""
        s = self.start[block]
        return self.kv[layer, 0, :, s:s + self.length[block]]

    def values(self, layer: int, block: str) -> torch.Tensor:
        """(kv_heads, len, D) view of the stored values; no copy."""
        s = self.start[block]
        return self.kv[layer, 1, :, s:s + self.length[block]]

    def span_views(self, start: int, n: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Per layer, the transposed keys (kv_heads, D, n) and the values (kv_heads, n, D)
        of arena columns start..start+n; views, no copy.

        Cached by span: a block that did not change since the last step (the prompt, the
        heard words while nobody speaks) costs no new view ops, and at voice-turn lengths a
        step is bound by its number of ops. Only the few spans of the current steps are kept.
        """
        views = self._spans.get((start, n))
        if views is None:
            if len(self._spans) >= 64:
                self._spans.clear()
            cols = self.kv.narrow(3, start, n)                  # (layers, 2, kvh, n, D)
            views = (cols[:, 0].transpose(2, 3).unbind(0), cols[:, 1].unbind(0))
            self._spans[(start, n)] = views
        return views

    # ------------------------------------------------------------ bookkeeping

    def used_tokens(self) -> int:
        return sum(self.length.values())

    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()

    def __repr__(self) -> str:
        used = ", ".join(f"{k}={self.length[k]}/{self.capacity[k]}" for k in self.capacity)
        return f"BlockArena({used})"
