"""FlyThinker fused pair: the parallel training pass equals the step-wise decoder."""

from __future__ import annotations

import pytest
import torch

from voice_agent.core.flythinker.decode import PairDecoder, generator_only
from voice_agent.core.flythinker.fusion import FusedPair
from voice_agent.core.flythinker.tiny import tiny_qwen3

V = 300


def make_pair(d_r: int, lam: float = 0.5, seed: int = 0) -> FusedPair:
    g = tiny_qwen3(V, hidden=64, seed=seed, init_range=0.1)
    r = tiny_qwen3(V, hidden=d_r, seed=seed + 1, init_range=0.1)
    return FusedPair(g, r, lam).eval()


def ids(n: int = 12, seed: int = 5) -> torch.Tensor:
    return torch.randint(3, V, (1, n), generator=torch.Generator().manual_seed(seed))


def stepwise_logits(pair: FusedPair, x: torch.Tensor, prompt: int, concurrent: bool) -> torch.Tensor:
    dec = PairDecoder(pair, concurrent=concurrent)
    rows = [dec.prefill(x[0, :prompt].tolist())]
    for t in range(prompt, x.shape[1]):
        rows.append(dec.step(int(x[0, t])))
    dec.close()
    return torch.stack(rows)  # logits at positions prompt-1 .. T-1


@pytest.mark.parametrize("d_r", [64, 32])
def test_parallel_pass_equals_stepwise_decode(d_r):
    pair, x, prompt = make_pair(d_r), ids(), 5
    with torch.no_grad():
        full = pair(x).logits[0]
        ctrl = pair(x, shift=False).logits[0]
    steps = stepwise_logits(pair, x, prompt, concurrent=False)
    assert torch.allclose(full[prompt - 1:], steps, atol=1e-5, rtol=0)
    # without the one-step shift the logits are clearly different
    assert (ctrl[prompt - 1:] - steps).abs().max() > 1e-2
    # the concurrent decoder computes the same numbers
    assert torch.allclose(stepwise_logits(pair, x, prompt, concurrent=True), steps, atol=1e-5, rtol=0)


def _added(pair: FusedPair, x: torch.Tensor) -> torch.Tensor:
    """What the pair adds to the generator's input embeddings, captured at its input."""
    seen = {}

    def grab(mod, args, kwargs):
        seen["e"] = kwargs["inputs_embeds"]

    hook = pair.generator.get_decoder().register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        pair(x)
    hook.remove()
    return seen["e"][0] - pair.generator.get_input_embeddings()(x)[0]


def test_position_zero_norm_and_width():
    pair, x = make_pair(32, lam=0.5), ids()
    added = _added(pair, x).detach()
    assert added[0].abs().max() == 0                       # position 0: no thought
    assert added[:, 32:].abs().max() == 0                  # nothing beyond the reasoner width
    want = 0.5 * pair.generator.get_input_embeddings().weight.norm(dim=-1).mean()
    norms = added[1:].norm(dim=-1)
    assert torch.allclose(norms, want.expand_as(norms), rtol=1e-5)


def test_lambda_zero_is_the_generator_alone():
    pair, x = make_pair(32, lam=0.0), ids()
    with torch.no_grad():
        assert torch.equal(pair(x).logits, pair.generator(input_ids=x).logits.float())
    dec = PairDecoder(pair, concurrent=False)
    fused = dec.generate(x[0].tolist(), 8).tokens
    assert fused == generator_only(pair.generator, x[0].tolist(), 8).tokens


def test_reasoner_gets_gradient_only_through_the_generator_loss():
    g = tiny_qwen3(V, hidden=64, seed=0, init_range=0.1)
    r = tiny_qwen3(V, hidden=32, seed=1, init_range=0.1, tie=False)  # its own head, unused
    pair, x = FusedPair(g, r, 0.5).train(), ids()
    labels = x.clone()
    labels[:, :4] = -100
    pair(x, labels=labels).loss.backward()
    body = [p.grad for n, p in r.named_parameters() if ".layers." in n or "embed_tokens" in n]
    assert body and all(gr is not None and gr.abs().sum() > 0 for gr in body)
    assert r.get_output_embeddings().weight.grad is None   # no loss of its own
    # λ = 0: the generator's loss no longer reaches the reasoner at all
    pair.zero_grad(set_to_none=True)
    pair.lam = 0.0
    pair(x, labels=labels).loss.backward()
    assert all(p.grad is None for p in r.parameters())
    assert any(p.grad is not None for p in g.parameters())


def test_concurrent_decoder_gives_the_same_tokens():
    pair, x = make_pair(32), ids(6)
    seq = PairDecoder(pair, concurrent=False).generate(x[0].tolist(), 24)
    conc_dec = PairDecoder(pair, concurrent=True)
    conc = conc_dec.generate(x[0].tolist(), 24)
    conc_dec.close()
    assert conc.tokens == seq.tokens and len(seq.tokens) == 24
