"""Random-init Qwen3 models of any width, built by code, for tests and the CPU experiment.

Both members of a pair are built over the same vocabulary, so they share a tokenizer.
"""

from __future__ import annotations

import torch


def tiny_qwen3(vocab_size: int, hidden: int = 64, layers: int = 2, heads: int = 4,
               kv_heads: int = 2, intermediate: int | None = None, seed: int = 0,
               init_range: float = 0.02, tie: bool = True):
    """A Qwen3ForCausalLM with ``hidden`` dims (head_dim = hidden / heads), seeded."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        head_dim=hidden // heads, max_position_embeddings=4096, rope_theta=10000.0,
        tie_word_embeddings=tie, initializer_range=init_range,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    return model.eval()


def n_params(model: torch.nn.Module) -> int:
    """Distinct parameters (tied embeddings count once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
