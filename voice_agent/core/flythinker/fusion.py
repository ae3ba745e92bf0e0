"""The fused pair: a reasoner LM whose last hidden state at t−1 is added to the
generator's input embedding at t (FlyThinker, arXiv 2512.06690).

The thought is the reasoner's post-final-norm hidden state, L2-normalised and rescaled to
the mean L2 norm of the generator's embedding rows (both norms detached), times λ. A
narrower reasoner fills the first d_R dimensions; nothing is projected, so the pair has
no parameters of its own. Position 0 gets no thought: nothing has been read before it.

One parallel forward serves training: the reasoner reads the whole sequence once (its
thought at t depends only on tokens ≤ t, never on earlier thoughts), the thoughts are
shifted by one and added, and the generator runs once. ``voice_agent.core.flythinker.decode``
runs the same arithmetic step by step with the reasoner one step behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from voice_agent.errors import ModelError

DEFAULT_LAMBDA = 0.5


@dataclass
class PairOutput:
    """``logits`` (B, T, V) fp32 of the generator; ``loss`` the mean next-token CE over
    labelled positions (None without labels); ``thoughts`` (B, T, d_R) the scaled thought
    each position produced (before the shift)."""

    logits: torch.Tensor
    loss: torch.Tensor | None
    thoughts: torch.Tensor


def hidden_size(model: nn.Module) -> int:
    return int(model.get_input_embeddings().weight.shape[1])


def base_decoder(model: nn.Module) -> nn.Module:
    """The transformer under the LM head: its ``last_hidden_state`` is post-final-norm,
    the vector that would feed the head (the FlyThinker thought)."""
    dec = model.get_decoder()
    if dec is None or dec is model:
        raise ModelError(f"{type(model).__name__}: cannot find the decoder under the LM head")
    return dec


class FusedPair(nn.Module):
    """Generator + reasoner sharing one tokenizer. ``lam`` weights the thought."""

    def __init__(self, generator: nn.Module, reasoner: nn.Module, lam: float = DEFAULT_LAMBDA) -> None:
        super().__init__()
        d_g, d_r = hidden_size(generator), hidden_size(reasoner)
        if d_r > d_g:
            raise ModelError(f"the reasoner is wider than the generator ({d_r} > {d_g}); "
                             "thoughts fill the first d_R embedding dims, so d_R <= d_G")
        self.generator, self.reasoner, self.lam = generator, reasoner, float(lam)
        self.d_g, self.d_r = d_g, d_r

    # ------------------------------------------------------------ the arithmetic

    def embed_scale(self) -> torch.Tensor:
        """Mean L2 norm of the generator's embedding rows (a detached scalar)."""
        w = self.generator.get_input_embeddings().weight
        return w.detach().float().norm(dim=-1).mean()

    def thoughts(self, hidden: torch.Tensor) -> torch.Tensor:
        """(…, d_R) reasoner hidden states -> λ · unit vectors · mean embedding norm."""
        h = hidden.float()
        unit = h / h.norm(dim=-1, keepdim=True).detach().clamp_min(1e-6)
        return (self.lam * self.embed_scale() * unit).to(hidden.dtype)

    def fuse(self, embeds: torch.Tensor, thoughts: torch.Tensor) -> torch.Tensor:
        """Add (…, d_R) thoughts into the first d_R dims of (…, d_G) embeddings."""
        if self.d_r == self.d_g:
            return embeds + thoughts.to(embeds.dtype)
        pad = embeds.new_zeros(*thoughts.shape[:-1], self.d_g - self.d_r)
        return embeds + torch.cat([thoughts.to(embeds.dtype), pad], dim=-1)

    def reason(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               **kwargs) -> torch.Tensor:
        """(B, T) ids -> (B, T, d_R) thoughts, one per position (unshifted)."""
        out = base_decoder(self.reasoner)(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return self.thoughts(out.last_hidden_state)

    # ------------------------------------------------------------ the parallel pass

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, shift: bool = True) -> PairOutput:
        """One pass of each model over right-padded (B, T) ids. ``labels`` use -100 for
        positions without a loss. ``shift=False`` adds each position's own thought (a
        control that leaks the token being read into the same position; never trained)."""
        if self.lam == 0.0:  # generator only, bit for bit
            thoughts = torch.zeros(*input_ids.shape, self.d_r, device=input_ids.device)
            logits = self.generator(input_ids=input_ids, attention_mask=attention_mask).logits.float()
            return PairOutput(logits, _loss(logits, labels), thoughts)
        thoughts = self.reason(input_ids, attention_mask)                     # (B, T, d_R)
        if shift:  # position t gets the thought of t−1; position 0 gets none
            moved = torch.cat([torch.zeros_like(thoughts[:, :1]), thoughts[:, :-1]], dim=1)
        else:
            moved = thoughts
        embeds = self.generator.get_input_embeddings()(input_ids)            # (B, T, d_G)
        out = self.generator(inputs_embeds=self.fuse(embeds, moved), attention_mask=attention_mask)
        logits = out.logits.float()
        return PairOutput(logits, _loss(logits, labels), thoughts)


def _loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """Mean CE of position t's logits against label t+1 (labels aligned with the ids)."""
    if labels is None:
        return None
    return nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)


class GeneratorOnly(nn.Module):
    """The generator alone behind the pair's interface: the SFT baseline runs through the
    same training loop, data and metrics."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator, self.reasoner, self.lam = generator, None, 0.0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, shift: bool = True) -> PairOutput:
        logits = self.generator(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        return PairOutput(logits, _loss(logits, labels), torch.zeros(0))
