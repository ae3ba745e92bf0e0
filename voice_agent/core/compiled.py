"""The async decode step as one compiled graph (``torch.compile``) over the block arena.

The eager step (``attention.make_plan`` + ``forward_step``) rebuilds Python lists, masks and
per-block slices every step and dispatches thousands of small ATen ops; at voice-turn
contexts that fixed cost is most of a step. Here one decode step (T = 1, one or two rows)
is a single graph whose *structure* is fixed per set of row views, and whose only varying
parts are tensors and the per-block read lengths:

- every block of the rows' views is always present (an empty one is read as a short,
  fully masked span), so a block that fills up or empties does not change the graph;
- a block's read length is its stored length padded by ``pad`` (``dynamic``: to at least
  2, with the lengths symbolic, one graph per set of views; ``buckets``: to the next power
  of two from 64, static shapes, one graph per bucket tuple: what a CUDA graph needs);
- the step's own new tokens are scored as extra columns from the fresh keys instead of
  being read back from the arena, so the graph only reads the arena; their K/V come out of
  the graph and are stored with one ``index_copy_`` for all layers.

The math is the eager step's (same rotations, fp32 softmax over the whole view), so the
greedy tokens are identical and the logits agree to float rounding (tests/test_core_compiled.py).
Prefills (prompt, listen, control question, splits) stay eager: they are rare and their
lengths vary too much for a graph to pay. The model's decoder layers run unchanged; only
the attention function (``attention.block_view_attention``) hands a step to ``attend``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from voice_agent.core.attention import (check_supported, rotate_queries, scaled_rotation,
                                        view_offsets)
from voice_agent.core.decode import CompileError
from voice_agent.core.kv import BlockArena
from voice_agent.core.smoothquant import DynamicInt8Linear

SHAPES = ("dynamic", "buckets")
MIN_BUCKET = 64


def wanted(setting: str, device: torch.device) -> bool:
    """Does the ``compile`` setting ask for the compiled step on ``device``?"""
    return setting in ("on", "regional") or (setting == "auto" and device.type == "cuda")


def pad_length(n: int, capacity: int, shapes: str) -> int:
    """Columns to read for a block holding ``n`` tokens out of ``capacity``.

    ``dynamic``: at least 2, because the compiler specialises sizes 0 and 1 (a block that
    empties or holds one token would otherwise cost a new graph). ``buckets``: the next
    power of two from ``MIN_BUCKET``, so static shapes change only at a few lengths.
    """
    if shapes == "dynamic":
        want = max(n, 2)
    else:
        want = MIN_BUCKET
        while want < n:
            want *= 2
    return min(want, capacity)


@dataclass
class DecodePlan:
    """What ``attend`` needs inside the graph; built there, so it is no graph input."""

    kv: torch.Tensor                  # this layer's arena slice (2, kv_heads, capacity, D)
    spans: tuple[tuple[int, int], ...]  # per view block: (arena start, columns read)
    new_block: tuple[int, ...]        # per row: index in spans of the block it writes
    q_cos: torch.Tensor               # (nb, 1, B, 1, 1, D) rotation by (written - block) offset
    q_sin: torch.Tensor               # per block and row, as the eager step's plan
    mask: torch.Tensor                # (B, 1, S + B) additive: padding, unseen blocks, new cols
    new_kv: list = field(default_factory=list)  # per layer: (k_local, v), each (B, kvh, 1, D)

    def attend(self, module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
               value: torch.Tensor, scaling: float) -> tuple[torch.Tensor, None]:
        """The view attention of one layer (T = 1): the eager step's math on padded spans."""
        B, H, T, D = query.shape
        kvh = key.shape[1]
        g = H // kvh
        store = self.kv.dtype  # fp32 on a CPU under bf16 weights (core/kv.arena_dtype)
        k_new = key.to(store)  # the stock RoPE ran at block-local positions, as in the eager step
        v_new = value.to(store)
        self.new_kv.append((k_new, v_new))
        qp = query.view(B, kvh, g, T, D).transpose(0, 1)                 # (kvh, B, g, 1, D)
        cos, sin = scaled_rotation(self.q_cos, self.q_sin, scaling)
        q_all = rotate_queries(qp.unsqueeze(0), cos, sin)               # (nb, kvh, B, g, 1, D)
        q_all = q_all.to(store)
        q_all = q_all.reshape(len(self.spans), kvh, B * g * T, D)
        k_layer, v_layer = self.kv.unbind(0)                             # (kvh, capacity, D)
        parts = [torch.bmm(q_all[i], k_layer.narrow(1, s0, n).transpose(1, 2))
                 for i, (s0, n) in enumerate(self.spans)]
        # The step's own tokens, scored with the query rotated for the block each is
        # written to (as the eager step does once they sit in that block).
        k_rows = k_new.transpose(0, 1)                                   # (kvh, B, 1, D)
        parts += [torch.bmm(q_all[self.new_block[j]], k_rows[:, j].transpose(1, 2))
                  for j in range(B)]
        scores = torch.cat(parts, dim=-1)                                # (kvh, B*g, S + B)
        S = scores.shape[-1]
        scores = scores.view(kvh, B, g, S) + self.mask
        probs = torch.softmax(scores.float(), dim=-1).to(store).view(kvh, B * g * T, S)
        out, c = None, 0
        for s0, n in self.spans:
            p, v = probs.narrow(2, c, n), v_layer.narrow(1, s0, n)
            out = torch.bmm(p, v) if out is None else torch.baddbmm(out, p, v)
            c += n
        v_rows = v_new.transpose(0, 1)                                   # (kvh, B, 1, D)
        for j in range(B):
            out = torch.baddbmm(out, probs.narrow(2, c + j, 1), v_rows[:, j])
        out = out.view(kvh, B, g, T, D).permute(1, 3, 0, 2, 4).reshape(B, T, H, D)
        return out.to(query.dtype), None


def _step_inputs(model: torch.nn.Module, ids: torch.Tensor, pos: torch.Tensor,
                 lens: torch.Tensor, sees: torch.Tensor,
                 new_seen: tuple[tuple[bool, ...], ...], ns: tuple[int, ...]):
    """The embedded tokens, the stock RoPE of their positions, the per-block rotations and
    the additive mask (B, 1, S + B) of one step (see ``_graph`` for the arguments)."""
    decoder = model.get_decoder()
    rotary = decoder.rotary_emb
    B, nb = ids.shape[0], len(ns)
    h = decoder.embed_tokens(ids)                                        # (B, 1, hidden)
    cos, sin = rotary(h, pos[:B].view(B, 1))                             # as the stock model
    scale = float(getattr(rotary, "attention_scaling", 1.0) or 1.0)
    rcos, rsin = rotary(torch.zeros(1, dtype=torch.float32, device=h.device), pos[B:].view(1, -1))
    rcos, rsin = rcos[0] / scale, rsin[0] / scale                        # (nb*B, D)
    D = rcos.shape[-1]
    masks = []
    for i, n in enumerate(ns):
        valid = (torch.arange(n, device=h.device) < lens[i]) & sees[:, i:i + 1]
        masks.append(valid)
    masks.append(torch.tensor(new_seen, dtype=torch.bool, device=h.device))  # (B, B)
    mask = torch.where(torch.cat(masks, dim=1), 0.0, -math.inf).view(B, 1, -1)
    rot = (rcos.view(nb, 1, B, 1, 1, D), rsin.view(nb, 1, B, 1, 1, D))
    return h, cos, sin, rot, mask


def _layer_step(layer: torch.nn.Module, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                kv_layer: torch.Tensor, q_cos: torch.Tensor, q_sin: torch.Tensor, mask: torch.Tensor,
                starts: tuple[int, ...], new_block: tuple[int, ...], *ns: int):
    """One stock decoder layer over the view attention: (h, new keys, new values)."""
    plan = DecodePlan(kv=kv_layer, spans=tuple(zip(starts, ns)), new_block=new_block,
                      q_cos=q_cos, q_sin=q_sin, mask=mask)
    h = layer(h, attention_mask=None, position_embeddings=(cos, sin), block_plan=plan)
    k, v = plan.new_kv[0]
    return h, k, v


def _hidden_and_kv(model: torch.nn.Module, h: torch.Tensor, new_kv: list) -> tuple[torch.Tensor, torch.Tensor]:
    """The last position's normed hidden state (B, d) and the new K/V. The LM head runs
    after the graph, eager (``CompiledDecode._run``): under int8 it is fbgemm's packed
    product (core/precision.ShortlistHead), which dynamo cannot trace, and one product
    outside the graph costs one call."""
    h = model.get_decoder().norm(h)
    new = torch.stack([torch.stack((k[:, :, 0], v[:, :, 0])).transpose(1, 2)
                       for k, v in new_kv])                              # (L, 2, kvh, B, D)
    return h[:, -1], new


def _graph(model: torch.nn.Module, kv: torch.Tensor, ids: torch.Tensor, pos: torch.Tensor,
           lens: torch.Tensor, sees: torch.Tensor, starts: tuple[int, ...],
           new_block: tuple[int, ...], new_seen: tuple[tuple[bool, ...], ...],
           *ns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step up to the LM head: the last hidden states (B, d) and the new K/V
    (layers, 2, kvh, B, D).

    ``pos`` holds, in order, each row's new position inside the block it writes (B), then
    per block and row the written block's offset minus that block's offset (nb * B): the
    eager step's rotations (attention.make_plan). ``lens``: each view
    block's stored length before this step; ``sees``: (B, nb) whether a row's view holds
    the block; ``ns``: the columns read per block (padded lengths).
    """
    h, cos, sin, rot, mask = _step_inputs(model, ids, pos, lens, sees, new_seen, ns)
    new_kv = []
    for i, layer in enumerate(model.get_decoder().layers):
        h, k, v = _layer_step(layer, h, cos, sin, kv[i], *rot, mask, starts, new_block, *ns)
        new_kv.append((k, v))
    return _hidden_and_kv(model, h, new_kv)


def _regional(layer_fn, model: torch.nn.Module, kv: torch.Tensor, ids: torch.Tensor,
              pos: torch.Tensor, lens: torch.Tensor, sees: torch.Tensor,
              starts: tuple[int, ...], new_block: tuple[int, ...],
              new_seen: tuple[tuple[bool, ...], ...], *ns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``_graph`` with only the decoder layer compiled (``layer_fn``), once for all layers:
    the stock layers are alike, so one graph serves every layer and the compile costs one
    layer, not the whole depth; the few ops around the layers run eager."""
    h, cos, sin, rot, mask = _step_inputs(model, ids, pos, lens, sees, new_seen, ns)
    new_kv = []
    for i, layer in enumerate(model.get_decoder().layers):
        h, k, v = layer_fn(layer, h, cos, sin, kv[i], *rot, mask, starts, new_block, *ns)
        new_kv.append((k, v))
    return _hidden_and_kv(model, h, new_kv)


class CompiledDecode:
    """Runs the engine's decode steps through one compiled graph per set of row views.

    Args:
        model: the engine's model (already switched to the view attention).
        arena: the engine's arena; the graph reads it and this class writes the new K/V.
        shapes: "dynamic" (symbolic read lengths: few graphs, the CPU choice) or "buckets"
            (static shapes per power-of-two bucket: what CUDA graphs need).
        mode: torch.compile mode; default "reduce-overhead" (CUDA graphs) on CUDA, else
            inductor's default.
        regional: compile one decoder layer (shared by all layers) instead of the whole
            step: a compile as long as one layer's, a few eager ops per layer per step.
    """

    def __init__(self, model: torch.nn.Module, arena: BlockArena, *, shapes: str | None = None,
                 mode: str | None = None, regional: bool = False) -> None:
        check_supported(model)
        cuda = arena.kv.device.type == "cuda"
        self.shapes = shapes or ("buckets" if cuda else "dynamic")
        if self.shapes not in SHAPES:
            raise ValueError(f"shapes must be one of {SHAPES}, got {shapes!r}")
        if _has_dynamic_int8(model):
            raise CompileError("the compiled step does not take fbgemm's dynamic int8 "
                               "weights (--dtype w8a8, or int8 where bf16 is not native: "
                               "its packed weights do not compile); use --dtype fp32, bf16 "
                               "or int8 where bf16 is native, or leave compile off")
        if not cuda:
            _check_cpp_compiler()
        self.model, self.arena = model, arena
        self.mode = mode if mode is not None else ("reduce-overhead" if cuda else None)
        if cuda:  # the arena is updated in place: a CUDA graph must not copy it per replay
            torch._dynamo.mark_static_address(arena.kv)
        self.compiles = 0      # graph keys met first by this instance
        self._seen: set = set()
        self._sees: dict = {}
        self.regional = regional
        if regional:
            layer_fn = _compiled(_layer_step, self.mode, self.shapes)
            self._fn = lambda *args: _regional(layer_fn, *args)
        else:
            self._fn = _compiled(_graph, self.mode, self.shapes)

    def warm_up(self, view_sets: Sequence[Sequence[tuple[str, ...]]]) -> None:
        """Build the graph of each set of row views now, before a clock starts, on a
        scratch state of the arena (emptied afterwards): a first decode step must not
        stall a turn for the compile."""
        arena = self.arena
        for views in view_sets:
            arena.reset()
            for v in views:
                for b in v[:-1]:
                    if arena.length[b] == 0:
                        arena.reserve(b, 1)
            self.step(views, [0] * len(views))
        arena.reset()

    def step(self, views: Sequence[tuple[str, ...]], ids: Sequence[int]) -> torch.Tensor:
        """Reserve one token per row in its written block, run the step, store its K/V.

        Returns (B, V) fp32 logits. On any error the reservations are undone.
        """
        arena = self.arena
        writes = [v[-1] for v in views]
        assert len(set(writes)) == len(writes), f"two rows write one block: {writes}"
        old = [arena.length[b] for b in writes]
        blocks: list[str] = []
        for v in views:
            blocks += [b for b in v if b not in blocks]
        starts = []
        try:
            for b in writes:
                starts.append(arena.reserve(b, 1))
        except Exception:
            for b, s in zip(writes, starts):
                arena.truncate(b, s)
            raise
        try:
            return self._run(views, ids, writes, old, blocks)
        except BaseException:
            for b, s in zip(writes, old):
                arena.truncate(b, s)
            raise

    def _run(self, views, ids, writes, old, blocks) -> torch.Tensor:
        arena, B = self.arena, len(views)
        offsets = [view_offsets(arena, v) for v in views]
        # stored lengths before this step (the new tokens are the graph's extra columns)
        lens = [arena.length[b] - (1 if b in writes else 0) for b in blocks]
        # the new tokens' block-local positions (the stock RoPE), then per block and row
        # the query's further rotation: written block's offset - that block's offset
        pos = (list(old) + [offsets[r][w] - offsets[r].get(b, offsets[r][w])
                            for b in blocks for r, w in enumerate(writes)])
        key = tuple(views)
        static = self._sees.get(key)
        if static is None:
            sees = torch.tensor([[b in v for b in blocks] for v in views], device=arena.kv.device)
            new_seen = tuple(tuple(writes[j] in views[r] for j in range(B)) for r in range(B))
            static = (sees, tuple(arena.start[b] for b in blocks),
                      tuple(blocks.index(w) for w in writes), new_seen)
            self._sees[key] = static
        sees, starts, new_block, new_seen = static
        ns = tuple(pad_length(n, arena.capacity[b], self.shapes) for n, b in zip(lens, blocks))
        dev = arena.kv.device
        meta = torch.tensor(pos + lens, dtype=torch.long, device=dev)
        x = torch.tensor([[i] for i in ids], dtype=torch.long, device=dev)
        graph_key = (key, ns if self.shapes == "buckets" else None)
        if graph_key not in self._seen:
            self._seen.add(graph_key)
            self.compiles += 1
        with torch.inference_mode():
            h, new = self._fn(self.model, arena.kv, x, meta[:len(pos)], meta[len(pos):],
                              sees, starts, new_block, new_seen, *ns)
            logits = self.model.get_output_embeddings()(h).float()  # before the next replay
            idx = torch.tensor([arena.start[w] + o for w, o in zip(writes, old)],
                               dtype=torch.long, device=dev)
            arena.kv.index_copy_(3, idx, new.to(arena.kv.dtype))
        return logits


_COMPILED: dict = {}


def _compiled(fn, mode: str | None, shapes: str):
    """One compiled ``fn`` per (mode, shapes) in the process: dynamo keeps its graphs on
    the wrapper, so engines that share a model (the server's sessions) share them."""
    key = (fn.__name__, mode, shapes)
    if key not in _COMPILED:
        if shapes == "buckets":
            # one graph per bucket tuple and view set: more than dynamo's default of 8
            cfg = torch._dynamo.config
            cfg.recompile_limit = max(cfg.recompile_limit, 64)
        _COMPILED[key] = torch.compile(fn, fullgraph=True, mode=mode,
                                       dynamic=True if shapes == "dynamic" else False)
    return _COMPILED[key]


def compile_counters() -> dict[str, int]:
    """Graphs dynamo built so far in this process (for the bench: recompiles are visible)."""
    from torch._dynamo.utils import counters

    return {"unique_graphs": int(counters["stats"]["unique_graphs"]),
            "calls_captured": int(counters["stats"]["calls_captured"])}


def _has_dynamic_int8(model: torch.nn.Module) -> bool:
    """fbgemm's dynamic int8 layers (core/smoothquant: w8a8, or int8 where bf16 is not
    native), whose packed weights dynamo cannot trace. Weight-only int8
    (``Int8WeightOnlyLinear``) is a plain ATen op that inductor lowers, and compiles."""
    return any(isinstance(m, DynamicInt8Linear) for m in model.modules())


def _check_cpp_compiler() -> None:
    """Inductor builds C++ on a CPU: without a compiler the first step would fail deep inside."""
    import shutil

    from torch._inductor import config as inductor_config

    cxx = inductor_config.cpp.cxx
    names = [c for c in (cxx if isinstance(cxx, tuple) else (cxx,)) if c] or ["g++"]
    if not any(shutil.which(c) for c in names + ["g++", "c++", "clang++"]):
        raise CompileError("the compiled step needs a C++ compiler on a CPU (inductor builds "
                           "C++); install g++ (apt-get install -y g++) or leave compile off")
