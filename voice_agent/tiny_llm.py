"""A tiny random-init Qwen3 with a locally trained tokenizer, for tests and offline runs.

Everything is built deterministically by this file from ``assets/tiny_llm_corpus.txt``,
in a few seconds, and cached under ``models/``. It carries the Qwen special tokens and a
Qwen3-style chat template, so the core's Qwen3 layout runs on it exactly as on a real
Qwen3. Its weights are random: anything it says is noise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from voice_agent.quiet import quiet_loading

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
BUILD_VERSION = 2  # bump to rebuild cached copies when this recipe changes
VOCAB_SIZE = 768
SEED = 1234

# A compact Qwen3-style template: system/user/assistant turns; past assistant turns lose
# their thoughts; the generation prompt opens <think> unless enable_thinking is False,
# in which case it writes the empty think block, as Qwen3 does.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set content = message['content'] -%}"
    "{%- if message['role'] == 'assistant' and '</think>' in content -%}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


def corpus_path() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "tiny_llm_corpus.txt"


def build_tokenizer():
    """Byte-level BPE trained on the repo's corpus: any text encodes, nothing downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = corpus_path().read_text(encoding="utf-8")
    # Qwen's chat markup is ordinary text too ("\n", "user", "assistant"): train on it.
    lines = text.splitlines() + ["user\n", "assistant\n", "system\n", "\n\n", " yes", " no", "Yes", "No"]
    tok.train_from_iterator(lines, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
        rope_theta=10000.0, tie_word_embeddings=True,
        initializer_range=0.3,  # the default 0.02 makes greedy decoding repeat one token forever
    )
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = Qwen3ForCausalLM(config)
    model.eval()
    return model


def ensure_tiny_llm(out: Path) -> Path:
    """Build the tiny model into ``out`` unless an up-to-date copy is already there."""
    stamp = out / "voice_agent_build.json"
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()).get("version") == BUILD_VERSION:
                return out
        except ValueError:
            pass
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer))
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_loading():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    (tmp / "voice_agent_build.json").write_text(json.dumps({"version": BUILD_VERSION, "noise": True}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out
