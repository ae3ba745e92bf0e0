"""View-aware attention over the block arena, plugged into stock transformers models.

A forward pass is described by a ``StepPlan``: B rows, each with its *view* (an ordered
list of blocks; the last one is the block the row writes) and T new tokens per row. The
model is called with ``position_ids`` set to each new token's position *inside the block
it is written to* and ``block_plan=plan``; transformers hands that keyword down to the
attention function registered here under ``ATTN_NAME``. That function

1. stores the new keys and values in the arena as they come: the stock RoPE already put
   the keys at their block-local positions (the arena's convention, see ``kv.py``);
2. for every block, rotates the *query* further by (offset of the written block - offset
   of that block) in the row's view and scores it against the block's stored keys: the
   rotations compose to exactly the score at the true distance;
3. takes one softmax over all blocks of the row's view and sums probability-weighted values.

Stored keys are never re-rotated or copied per step. Under GQA the query is reshaped to
(kv_heads, groups, ...) instead of repeating keys. Rows that see the same block share one
matmul against it, so a block both streams see is read once per step, not once per row.
At voice-turn lengths (a few hundred tokens) a step costs its number of ops more than its
bytes, so everything that is the same for every layer (the per-block rotations with the
softmax scale folded in, each block's K and V views over all layers, the mask) is built
once per step in the plan, and a layer only selects from it.

``EAGER_NAME`` registers the slow, obviously correct twin (re-rotate every block's keys to
its true position, concatenate in view order, plain causal attention); the tests compare
the two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.masking_utils import AttentionMaskInterface

from voice_agent.core.kv import BlockArena
from voice_agent.errors import ModelError

ATTN_NAME = "block_view"
EAGER_NAME = "block_view_eager"
SUPPORTED_FAMILIES = ("qwen3", "qwen2", "llama", "mistral")


# ---------------------------------------------------------------- RoPE helpers


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE rotation in fp32 (the half-split convention of Llama/Qwen), back in x's dtype."""
    xf = x.float()
    return (xf * cos + _rotate_half(xf) * sin).to(x.dtype)


def scaled_rotation(cos: torch.Tensor, sin: torch.Tensor,
                    scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, signed sin) times the softmax scale, for ``rotate_queries``: rotate_half(x) is
    roll(x, D/2) with the first half negated, so the sign goes into the sin table."""
    half = sin.shape[-1] // 2
    sign = torch.ones(sin.shape[-1], dtype=sin.dtype, device=sin.device)
    sign[:half] = -1.0
    return cos * scaling, sin * (sign * scaling)


def rotate_queries(q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Each block's query rotation, scale included (tables from ``scaled_rotation``): four
    ops for all blocks and rows of a layer. The eager and the compiled step share it, so
    they round alike. (``addcmul`` is one op fewer, but measured further from a float64
    run on the tiny model: 1.1e-5 against 8.2e-6 on logits of about 8.)"""
    return q * cos + q.roll(q.shape[-1] // 2, -1) * sin


class RopeTables:
    """cos/sin of arbitrary (also negative) positions from the model's own rotary module.

    Non-negative positions (every step's rotations: a block never lies after the block its
    row writes) are read from a table the rotary module filled once, one index op instead
    of a rotary forward per step; the values are the module's own, element for element.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.rotary = model.get_decoder().rotary_emb
        # Scaled RoPE variants multiply cos/sin by a factor; a relative rotation must not.
        self.scale = float(getattr(self.rotary, "attention_scaling", 1.0) or 1.0)
        self._probe = torch.zeros(1, dtype=torch.float32, device=self.rotary.inv_freq.device)
        self._table: tuple[torch.Tensor, torch.Tensor] | None = None
        # Dynamic RoPE variants change their frequencies with the longest position asked
        # for: a table of far positions would change the near ones, so they compute.
        self.dynamic = getattr(self.rotary, "rope_type", "default") in ("dynamic", "longrope")

    def _compute(self, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.tensor([list(positions)], dtype=torch.long, device=self._probe.device)
        cos, sin = self.rotary(self._probe, pos)  # (1, N, D)
        return cos[0] / self.scale, sin[0] / self.scale

    def __call__(self, positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (cos, sin), each (len(positions), D) in fp32."""
        lo, hi = min(positions, default=0), max(positions, default=0)
        if lo < 0 or self.dynamic:
            return self._compute(positions)
        if self._table is None or hi >= self._table[0].shape[0]:
            size = 1024
            while size <= hi:
                size *= 2
            self._table = self._compute(range(size))
        idx = torch.tensor(list(positions), dtype=torch.long, device=self._probe.device)
        return self._table[0].index_select(0, idx), self._table[1].index_select(0, idx)


def check_supported(model: torch.nn.Module) -> None:
    """Raise ModelError for a model whose attention this module cannot take over."""
    cfg = model.config
    if cfg.model_type not in SUPPORTED_FAMILIES:
        raise ModelError(f"model family '{cfg.model_type}' is not supported by the async core "
                         f"(supported: {', '.join(SUPPORTED_FAMILIES)})")
    layer_types = getattr(cfg, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types) or getattr(cfg, "use_sliding_window", False):
        raise ModelError("the async core needs full attention in every layer (sliding-window "
                         "layers are not supported)")


# ---------------------------------------------------------------- the step plan


@dataclass
class StepPlan:
    """Everything one forward pass needs to know about blocks; shared by all layers.

    Built by ``make_plan``, which also reserves room for the new tokens in the arena.
    """

    arena: BlockArena
    views: list[tuple[str, ...]]      # per row; views[r][-1] is the block row r writes
    writes: list[tuple[str, int]]     # per row: (block, block-local position of token 0)
    position_ids: torch.Tensor        # (B, T) block-local positions: what the stock RoPE gets
    view_pos: torch.Tensor            # (B, T) true positions in each row's view
    blocks: list[str]                 # the union of the rows' views (non-empty blocks)
    cols: list[tuple[int, int]]       # per union block: its (first, end) column in the scores
    q_cos: torch.Tensor               # (nb, 1, B, 1, 1, D) rotation by (written - block) offset
    q_sin: torch.Tensor               # per block and row (the stock RoPE did the block-local part)
    mask: torch.Tensor | None         # (1, B, 1, T, S) additive; None when every row sees all
    offsets: list[dict[str, int]]     # per row: block -> offset in that row's view
    rope: RopeTables
    write_idx: torch.Tensor           # (B*T,) arena columns of the new tokens, row-major
    block_keys: list[tuple[torch.Tensor, ...]]    # per union block, per layer: K^T (kvh, D, len)
    block_values: list[tuple[torch.Tensor, ...]]  # per union block, per layer: V (kvh, len, D)
    _scaled: dict = field(default_factory=dict)  # softmax scale -> (cos, signed sin) scaled

    @property
    def q_len(self) -> int:
        return int(self.position_ids.shape[1])

    def query_rotation(self, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``scaled_rotation`` of this step's tables, once per step (every layer has the
        same scale)."""
        if scaling not in self._scaled:
            self._scaled[scaling] = scaled_rotation(self.q_cos, self.q_sin, scaling)
        return self._scaled[scaling]


def view_offsets(arena: BlockArena, view: Sequence[str]) -> dict[str, int]:
    """Offset of each block of ``view``: the summed lengths of the blocks before it."""
    out, pos = {}, 0
    for b in view:
        out[b] = pos
        pos += arena.length[b]
    return out


def make_plan(arena: BlockArena, views: Sequence[tuple[str, ...]], q_len: int,
              rope: RopeTables) -> StepPlan:
    """Reserve ``q_len`` tokens in each row's written block and describe the step.

    All reservations happen before offsets are read, so a row whose view contains another
    row's written block sees that row's new tokens: a batched step equals the rows run one
    after another (the thinker before the writer).
    """
    writes_blocks = [v[-1] for v in views]
    assert len(set(writes_blocks)) == len(writes_blocks), f"two rows write one block: {writes_blocks}"
    starts = []
    try:
        for b in writes_blocks:
            starts.append(arena.reserve(b, q_len))
    except Exception:
        for b, s in zip(writes_blocks, starts):
            arena.truncate(b, s)
        raise
    B, T = len(views), q_len
    offsets = [view_offsets(arena, v) for v in views]
    blocks: list[str] = []
    for v in views:
        blocks += [b for b in v if b not in blocks and arena.length[b] > 0]
    written = [offsets[r][v[-1]] for r, v in enumerate(views)]
    local = [[starts[r] + t for t in range(T)] for r in range(B)]
    # A row that does not see a block gets any rotation: the mask hides that block from it.
    cos, sin = rope([written[r] - offsets[r].get(b, written[r]) for b in blocks for r in range(B)])
    nb, D = len(blocks), cos.shape[-1]
    cols, c = [], 0
    for b in blocks:
        cols.append((c, c + arena.length[b]))
        c += arena.length[b]
    dev = cos.device
    mask = _view_mask(arena, views, blocks, cols, starts, T, c, dev)
    write_idx = torch.tensor([arena.start[b] + st + t for b, st in zip(writes_blocks, starts)
                              for t in range(T)], dtype=torch.long, device=dev)
    spans = [arena.span_views(arena.start[b], arena.length[b]) for b in blocks]
    return StepPlan(
        arena=arena, views=list(views), writes=list(zip(writes_blocks, starts)),
        position_ids=torch.tensor(local, dtype=torch.long, device=dev),
        view_pos=torch.tensor([[written[r] + p for p in local[r]] for r in range(B)],
                              dtype=torch.long, device=dev),
        blocks=blocks, cols=cols,
        q_cos=cos.view(nb, 1, B, 1, 1, D), q_sin=sin.view(nb, 1, B, 1, 1, D),
        mask=mask, offsets=offsets, rope=rope, write_idx=write_idx,
        block_keys=[k for k, _ in spans], block_values=[v for _, v in spans],
    )


def _view_mask(arena: BlockArena, views: Sequence[tuple[str, ...]], blocks: list[str],
               cols: list[tuple[int, int]], starts: list[int], T: int, S: int,
               device: torch.device) -> torch.Tensor | None:
    """Additive (1, B, 1, T, S) mask: blocks outside a row's view, and causality in its own block."""
    B = len(views)
    unseen = [(r, i) for r, v in enumerate(views) for i, b in enumerate(blocks) if b not in v]
    if not unseen and T == 1:
        return None
    mask = torch.zeros(B, T, S, dtype=torch.float32, device=device)
    for r, i in unseen:
        mask[r, :, cols[i][0]:cols[i][1]] = -math.inf
    if T > 1:
        t = torch.arange(T, device=device)[:, None]
        for r, v in enumerate(views):
            c0, c1 = cols[blocks.index(v[-1])]
            j = torch.arange(c1 - c0, device=device)[None, :]
            mask[r, :, c0:c1].masked_fill_(j > starts[r] + t, -math.inf)
    return mask.view(1, B, 1, T, S)


# ---------------------------------------------------------------- attention functions


def _store_new_kv(module: torch.nn.Module, key: torch.Tensor, value: torch.Tensor,
                  plan: StepPlan) -> None:
    """Write the new keys (already at block-local positions) and values to the arena."""
    # One scatter for the K and V of every row (the plan holds the arena columns) instead
    # of two copies per row: at short contexts a step is bound by its number of ops.
    B, kvh, T, D = key.shape
    store = plan.arena.kv.dtype  # fp32 on a CPU under bf16 weights (core/kv.arena_dtype)
    if key.dtype != store or value.dtype != store:
        key, value = key.to(store), value.to(store)
    kv = torch.cat((key, value), 1).transpose(0, 1).reshape(2 * kvh, B * T, D)  # a view at T=1
    plan.arena.layer_kv[module.layer_idx].index_copy_(1, plan.write_idx, kv)


def block_view_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                         value: torch.Tensor, attention_mask: torch.Tensor | None,
                         scaling: float, dropout: float = 0.0, **kwargs):
    """transformers attention signature; ``block_plan`` arrives through kwargs.

    Without a plan this is ordinary causal attention (so a model switched to this
    implementation still serves the plain baselines).
    """
    plan: StepPlan | None = kwargs.get("block_plan")
    if plan is None:
        return _plain_causal(module, query, key, value, scaling)
    if hasattr(plan, "attend"):  # a compiled decode step's plan (core/compiled.py)
        return plan.attend(module, query, key, value, scaling)
    B, H, T, D = query.shape
    kvh = key.shape[1]
    g = H // kvh
    layer, nb = module.layer_idx, len(plan.blocks)
    _store_new_kv(module, key, value, plan)
    # Short contexts are bound by the number of ops, not by bytes (6 blocks x 2 matmuls x
    # every layer), so a layer does four ops for all blocks' query rotations and one
    # select plus one bmm per block and matmul; the rest was built once in the plan.
    cos, sin = plan.query_rotation(scaling)
    qp = query.view(B, kvh, g, T, D).transpose(0, 1).unsqueeze(0)      # (1, kvh, B, g, T, D)
    q_all = rotate_queries(qp, cos, sin)                                # (nb, kvh, B, g, T, D)
    store = plan.arena.kv.dtype
    if q_all.dtype != store:  # rotated in fp32 (the tables), scored in the arena's dtype
        q_all = q_all.to(store)
    q_all = q_all.reshape(nb, kvh, B * g * T, D).unbind(0)
    scores = torch.cat([torch.bmm(q, k[layer]) for q, k in zip(q_all, plan.block_keys)],
                       dim=-1)                                          # (kvh, B*g*T, S)
    S = scores.shape[-1]
    if plan.mask is not None:
        scores = scores.view(kvh, B, g, T, S) + plan.mask[0]
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
    if probs.dtype != store:
        probs = probs.to(store)
    parts = probs.view(kvh, B * g * T, S).split([c1 - c0 for c0, c1 in plan.cols], dim=2)
    out = torch.bmm(parts[0], plan.block_values[0][layer])
    for p, v in zip(parts[1:], plan.block_values[1:]):
        out = torch.baddbmm(out, p, v[layer])                           # (kvh, B*g*T, D)
    out = out.view(kvh, B, g, T, D).permute(1, 3, 0, 2, 4).reshape(B, T, H, D)
    return out if out.dtype == query.dtype else out.to(query.dtype), None


def block_view_attention_eager(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                               value: torch.Tensor, attention_mask: torch.Tensor | None,
                               scaling: float, dropout: float = 0.0, **kwargs):
    """The slow twin: rotate the query to its true position, rebuild each row's sequence by
    re-rotating every block's keys to its offset, concatenate in view order and run plain
    causal attention. For tests only."""
    plan: StepPlan | None = kwargs.get("block_plan")
    if plan is None:
        return _plain_causal(module, query, key, value, scaling)
    B, H, T, D = query.shape
    kvh = key.shape[1]
    layer, arena = module.layer_idx, plan.arena
    rope = plan.rope
    _store_new_kv(module, key, value, plan)
    outs = []
    for r, view in enumerate(plan.views):
        cos, sin = rope([plan.offsets[r][view[-1]]])              # block-local -> view position
        q = _rotate(query[r], cos, sin).to(arena.kv.dtype)        # (H, T, D)
        ks, vs, kpos = [], [], []
        for b in view:
            n, o = arena.length[b], plan.offsets[r][b]
            if n == 0:
                continue
            cos, sin = rope([o])                                  # (1, D): local j -> o + j
            ks.append(_rotate(arena.keys(layer, b), cos, sin))   # (kvh, n, D) at true positions
            vs.append(arena.values(layer, b))
            kpos.append(torch.arange(o, o + n, device=query.device))
        k = torch.cat(ks, 1).repeat_interleave(H // kvh, dim=0)   # (H, S, D)
        v = torch.cat(vs, 1).repeat_interleave(H // kvh, dim=0)
        s = torch.matmul(q, k.transpose(1, 2)).float() * scaling  # (H, T, S)
        visible = torch.cat(kpos)[None, :] <= plan.view_pos[r][:, None]  # (T, S)
        s = s.masked_fill(~visible, -math.inf)
        outs.append(torch.matmul(torch.softmax(s, -1).to(v.dtype), v).transpose(0, 1))  # (T, H, D)
    return torch.stack(outs).to(query.dtype), None


def _plain_causal(module, query, key, value, scaling):
    """Causal attention for a single unpadded sequence (cache prefix + new tokens)."""
    B, H, T, D = query.shape
    S = key.shape[2]
    k = key.repeat_interleave(H // key.shape[1], dim=1)
    v = value.repeat_interleave(H // value.shape[1], dim=1)
    visible = torch.ones(T, S, dtype=torch.bool, device=query.device).tril(S - T)
    out = torch.nn.functional.scaled_dot_product_attention(query, k, v, attn_mask=visible, scale=scaling)
    return out.transpose(1, 2), None


def _no_mask(*args, **kwargs) -> None:
    """The view attention builds its own masks from the plan."""
    return None


def register() -> None:
    """Register both attention functions and their (empty) mask functions by name."""
    AttentionInterface.register(ATTN_NAME, block_view_attention)
    AttentionInterface.register(EAGER_NAME, block_view_attention_eager)
    AttentionMaskInterface.register(ATTN_NAME, _no_mask)
    AttentionMaskInterface.register(EAGER_NAME, _no_mask)


register()


# ---------------------------------------------------------------- the Cache shim


class _ArenaLayer(CacheLayerMixin):
    """What transformers asks a cache layer; the tensors live in the arena."""

    def __init__(self, arena: BlockArena) -> None:
        super().__init__()
        self.arena = arena
        self.is_initialized = True

    def lazy_initialization(self, key_states, value_states) -> None:
        return None

    def update(self, key_states, value_states, *args, **kwargs):
        return key_states, value_states

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.arena.used_tokens(), 0

    def get_seq_length(self) -> int:
        return self.arena.used_tokens()

    def get_max_length(self) -> int:
        return self.arena.total_capacity

    def reset(self) -> None:
        self.arena.reset()


class ArenaCache(Cache):
    """A transformers ``Cache`` in front of a ``BlockArena``.

    ``update`` hands back what it receives: the view attention stores the new K/V itself
    (it has the step plan), so the model code runs unchanged and nothing is concatenated.
    """

    def __init__(self, arena: BlockArena) -> None:
        super().__init__(layers=[_ArenaLayer(arena) for _ in range(arena.shape.num_layers)])
        self.arena = arena

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        return key_states, value_states


# ---------------------------------------------------------------- one forward pass


def forward_step(model: torch.nn.Module, cache: ArenaCache, input_ids: torch.Tensor,
                 plan: StepPlan, *, logits: bool = True, keep: int | None = None) -> torch.Tensor | None:
    """Run the stock model over (B, T) ``input_ids`` as ``plan`` says.

    Returns the last position's logits (B, V) in fp32; with ``keep``, the last ``keep``
    positions' (B, keep, V) (the engine's re-read of a draft); None without ``logits``
    (then the LM head is skipped).
    """
    B, T = input_ids.shape
    assert plan.position_ids.shape == (B, T), f"plan is {tuple(plan.position_ids.shape)}, ids {B, T}"
    if not logits:
        model.get_decoder()(input_ids=input_ids, position_ids=plan.position_ids,
                            cache=cache, use_cache=True, block_plan=plan)
        return None
    out = model(input_ids=input_ids, position_ids=plan.position_ids, cache=cache,
                use_cache=True, logits_to_keep=keep or 1, block_plan=plan)
    return out.logits[:, -1].float() if keep is None else out.logits[:, -keep:].float()


def use_block_attention(model: torch.nn.Module, eager: bool = False) -> None:
    """Switch ``model`` (its config object!) to the view attention."""
    check_supported(model)
    model.set_attn_implementation(EAGER_NAME if eager else ATTN_NAME)
