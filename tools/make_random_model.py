"""Write a FULL-SIZE random-weight checkpoint directory, for benchmarks (never committed).

    python tools/make_random_model.py --arch gpt2      --out /tmp/gpt2-random
    python tools/make_random_model.py --arch gemma3-1b --out /tmp/gemma3-random --seed 1

The directory looks like the real hub checkpoint (same config.json values, same tensor names,
shapes and dtypes, one model.safetensors), so loading, memory and speed behave as with the real
weights; only the values are random, so the text is gibberish and the logits carry no meaning.

- ``gpt2``: openai-community/gpt2 — 12 layers, 768 wide, 12 heads, 1024 positions, vocab 50257;
  keys without the ``transformer.`` prefix and no lm_head (tied to wte), float32, with the
  ``h.N.attn.bias`` causal-mask buffers (1, 1, 1024, 1024) the real file carries (~548 MB).
- ``gemma3-1b``: google/gemma-3-1b-it (gemma3_text) — 26 layers, hidden 1152, 4 heads, 1 KV head,
  head_dim 256, intermediate 6912, vocab 262144, bfloat16 (~2.0 GB); eos [1, 106].
- ``llama`` / ``llama-3b``: meta-llama/Llama-3.2-1B-Instruct / 3B (llama3 rope scaling, tied head,
  Llama 3 special tokens at 128000.., eos [128001, 128008, 128009]), bfloat16.
- ``qwen2``: Qwen/Qwen2.5-0.5B-Instruct (q/k/v biases, tied); ``qwen3``: Qwen/Qwen3-0.6B (q/k norms,
  head_dim 128); ChatML specials at 151643..; ``mistral``: Mistral-7B-v0.3 (untied, no window).
- ``gemma3``: google/gemma-3-4b-it (Gemma3ForConditionalGeneration): the text model under
  ``language_model.model.*`` and a SigLIP vision tower (random too), as the hub file holds them.

Needs only numpy and tokenizers (no torch, no transformers). The safetensors file is written by
hand, tensor by tensor and chunk by chunk, so peak memory stays around a hundred MB; bfloat16 is
stored as the top 16 bits of float32 rounded to nearest even (numpy has no bfloat16).

Random values: normal(0, 0.02) for every matrix and bias; norm weights normal(1, 0.02) for
GPT-2's LayerNorm and normal(0, 0.02) for Gemma's RMSNorm (which scales by 1 + w).

The tokenizer is a byte-level BPE trained on a small text (``make_fixtures.CORPUS``) whose model
vocabulary is padded with ``<|filler_N|>`` entries up to the config's vocab size (plain vocab
entries, not added tokens, so the file loads fast; they decode to their own text). GPT-2 keeps
``<|endoftext|>`` at 50256; Gemma keeps its special tokens at their real ids (<pad> 0, <eos> 1,
<bos> 2, <unk> 3, <start_of_turn> 105, <end_of_turn> 106), adds <bos> in its post-processor, and
ships a Gemma 3 chat template. The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from make_fixtures import (
    GPT2_EOS,
    gpt2_openai_config,
    train_byte_level_bpe,
    write_gpt2_tokenizer_files,
    write_json,
)
from tokenizers import Tokenizer, processors

# The families' chat templates and the Llama layer's tensors have one home, the test-time
# checkpoint generator (numpy only).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.checkpoints import CHATML_TEMPLATE, LLAMA3_TEMPLATE, MISTRAL_TEMPLATE, llama_layer

CHUNK_ELEMENTS = 1 << 22  # values generated per step: 16 MiB of float32
DTYPE_BYTES = {"F32": 4, "BF16": 2}
TRAINED_VOCAB = 1000  # BPE merges learned from the corpus before padding with fillers


# ----------------------------------------------------------------------------------------------
# streaming safetensors writer
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: its name, shape, on-disk dtype and how to fill it."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # "F32" | "BF16"
    init: str = "normal"  # "normal" (mean, std) | "causal_mask" (1 on and below the diagonal)
    mean: float = 0.0
    std: float = 0.02

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_BYTES[self.dtype]


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even (no NaNs expected here)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _values(spec: TensorSpec, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The tensor's values as float32 chunks, in row-major order."""
    if spec.init == "causal_mask":
        n = spec.shape[-1]
        yield np.tril(np.ones((n, n), dtype=np.float32)).reshape(-1)
        return
    remaining = spec.numel
    while remaining:
        count = min(remaining, CHUNK_ELEMENTS)
        chunk = rng.standard_normal(count, dtype=np.float32)
        chunk *= np.float32(spec.std)
        if spec.mean:
            chunk += np.float32(spec.mean)
        yield chunk
        remaining -= count


def safetensors_header(specs: list[TensorSpec]) -> bytes:
    """JSON header, space-padded to a multiple of 8 bytes, tensors laid out in the given order."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for spec in specs:
        header[spec.name] = {
            "dtype": spec.dtype,
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)


def write_safetensors(path: Path, specs: list[TensorSpec], seed: int) -> int:
    """Stream random tensors to ``path``; returns the file size in bytes."""
    specs = sorted(specs, key=lambda s: s.name)
    rng = np.random.Generator(np.random.PCG64(seed))
    header = safetensors_header(specs)
    with path.open("wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        for spec in specs:
            _write_tensor(f, spec, rng)
        size = f.tell()
    expected = 8 + len(header) + sum(s.nbytes for s in specs)
    assert size == expected, (size, expected)
    return size


def _write_tensor(f: BinaryIO, spec: TensorSpec, rng: np.random.Generator) -> None:
    written = 0
    for chunk in _values(spec, rng):
        data = f32_to_bf16_bits(chunk) if spec.dtype == "BF16" else chunk.astype("<f4", copy=False)
        f.write(data.tobytes())
        written += data.nbytes
    assert written == spec.nbytes, (spec.name, written, spec.nbytes)


# ----------------------------------------------------------------------------------------------
# tokenizers
# ----------------------------------------------------------------------------------------------


def pad_vocab(tok: Tokenizer, size: int) -> Tokenizer:
    """Append ``<|filler_N|>`` entries to the BPE model's vocabulary until it has ``size`` ids."""
    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    next_id = len(vocab)
    assert sorted(vocab.values()) == list(range(next_id)), "vocab ids must be dense"
    assert next_id <= size, (next_id, size)
    for i in range(size - next_id):
        vocab[f"<|filler_{i}|>"] = next_id + i
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


def gpt2_full_tokenizer(vocab_size: int) -> Tokenizer:
    """Byte-level BPE, fillers up to vocab_size - 1, then <|endoftext|> as the last id (50256)."""
    from tokenizers import AddedToken

    tok = pad_vocab(train_byte_level_bpe(TRAINED_VOCAB), vocab_size - 1)
    tok.add_special_tokens([AddedToken(GPT2_EOS, special=True, normalized=False)])
    assert tok.token_to_id(GPT2_EOS) == vocab_size - 1
    return tok


GEMMA3_SPECIAL: tuple[str, ...] = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "[multimodal]",
    *(f"<unused{i}>" for i in range(99)),
    "<start_of_turn>",
    "<end_of_turn>",
)

# The Gemma 3 instruction-tuned chat template (system prompt folded into the first user turn).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)


def gemma3_tokenizer(vocab_size: int) -> Tokenizer:
    tok = pad_vocab(train_byte_level_bpe(TRAINED_VOCAB, GEMMA3_SPECIAL), vocab_size)
    for token, expected in (("<pad>", 0), ("<eos>", 1), ("<bos>", 2), ("<end_of_turn>", 106)):
        assert tok.token_to_id(token) == expected, token
    # Like the real tokenizer.json: encode() prepends <bos>.
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)]
    )
    return tok


def write_gemma3_tokenizer_files(directory: Path, tok: Tokenizer, model_max_length: int) -> None:
    tok.save(str(directory / "tokenizer.json"))
    special = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}
    write_json(
        directory / "tokenizer_config.json",
        {
            "add_bos_token": True,
            "add_eos_token": False,
            **special,
            "chat_template": GEMMA3_CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "model_max_length": model_max_length,
            "spaces_between_special_tokens": False,
            "tokenizer_class": "PreTrainedTokenizerFast",
        },
    )
    write_json(directory / "special_tokens_map.json", special)


# ----------------------------------------------------------------------------------------------
# architectures
# ----------------------------------------------------------------------------------------------

# openai-community/gpt2's config.json: the tiny fixture's generator at the real sizes
GPT2_CONFIG: dict[str, Any] = gpt2_openai_config(
    {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024}, vocab_size=50257, eos_id=50256
)

GEMMA3_1B_CONFIG: dict[str, Any] = {
    "architectures": ["Gemma3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attn_logit_softcapping": None,
    "bos_token_id": 2,
    "cache_implementation": "hybrid",
    "eos_token_id": [1, 106],
    "final_logit_softcapping": None,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 1152,
    "initializer_range": 0.02,
    "intermediate_size": 6912,
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_attention_heads": 4,
    "num_hidden_layers": 26,
    "num_key_value_heads": 1,
    "pad_token_id": 0,
    "query_pre_attn_scalar": 256,
    "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000,
    "rope_scaling": None,
    "rope_theta": 1000000,
    "sliding_window": 512,
    "sliding_window_pattern": 6,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0.dev0",
    "use_cache": True,
    "vocab_size": 262144,
}


def gpt2_specs(cfg: dict[str, Any]) -> list[TensorSpec]:
    d, n_pos, vocab = cfg["n_embd"], cfg["n_positions"], cfg["vocab_size"]
    ff = 4 * d
    specs = [
        TensorSpec("wte.weight", (vocab, d), "F32"),
        TensorSpec("wpe.weight", (n_pos, d), "F32"),
        TensorSpec("ln_f.weight", (d,), "F32", mean=1.0),
        TensorSpec("ln_f.bias", (d,), "F32"),
    ]
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        specs += [
            TensorSpec(p + "ln_1.weight", (d,), "F32", mean=1.0),
            TensorSpec(p + "ln_1.bias", (d,), "F32"),
            TensorSpec(p + "attn.bias", (1, 1, n_pos, n_pos), "F32", init="causal_mask"),
            TensorSpec(p + "attn.c_attn.weight", (d, 3 * d), "F32"),  # Conv1D: [in, out]
            TensorSpec(p + "attn.c_attn.bias", (3 * d,), "F32"),
            TensorSpec(p + "attn.c_proj.weight", (d, d), "F32"),
            TensorSpec(p + "attn.c_proj.bias", (d,), "F32"),
            TensorSpec(p + "ln_2.weight", (d,), "F32", mean=1.0),
            TensorSpec(p + "ln_2.bias", (d,), "F32"),
            TensorSpec(p + "mlp.c_fc.weight", (d, ff), "F32"),
            TensorSpec(p + "mlp.c_fc.bias", (ff,), "F32"),
            TensorSpec(p + "mlp.c_proj.weight", (ff, d), "F32"),
            TensorSpec(p + "mlp.c_proj.bias", (d,), "F32"),
        ]
    return specs


def gemma3_specs(cfg: dict[str, Any]) -> list[TensorSpec]:
    h, ff, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd, nq, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    specs = [
        TensorSpec("model.embed_tokens.weight", (vocab, h), "BF16"),  # tied lm_head
        TensorSpec("model.norm.weight", (h,), "BF16"),
    ]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [
            TensorSpec(p + "input_layernorm.weight", (h,), "BF16"),
            TensorSpec(p + "self_attn.q_proj.weight", (nq * hd, h), "BF16"),  # nn.Linear: [out, in]
            TensorSpec(p + "self_attn.k_proj.weight", (nkv * hd, h), "BF16"),
            TensorSpec(p + "self_attn.v_proj.weight", (nkv * hd, h), "BF16"),
            TensorSpec(p + "self_attn.q_norm.weight", (hd,), "BF16"),
            TensorSpec(p + "self_attn.k_norm.weight", (hd,), "BF16"),
            TensorSpec(p + "self_attn.o_proj.weight", (h, nq * hd), "BF16"),
            TensorSpec(p + "post_attention_layernorm.weight", (h,), "BF16"),
            TensorSpec(p + "pre_feedforward_layernorm.weight", (h,), "BF16"),
            TensorSpec(p + "mlp.gate_proj.weight", (ff, h), "BF16"),
            TensorSpec(p + "mlp.up_proj.weight", (ff, h), "BF16"),
            TensorSpec(p + "mlp.down_proj.weight", (h, ff), "BF16"),
            TensorSpec(p + "post_feedforward_layernorm.weight", (h,), "BF16"),
        ]
    return specs


def write_model_files(
    out: Path, seed: int, cfg: dict[str, Any], specs: list[TensorSpec], generation: dict[str, Any]
) -> int:
    """model.safetensors (random values from seed), config.json and generation_config.json; returns
    the size of the weights file."""
    size = write_safetensors(out / "model.safetensors", specs, seed)
    write_json(out / "config.json", cfg)
    write_json(out / "generation_config.json", generation)
    return size


GPT2_GENERATION = {
    "_from_model_config": True, "bos_token_id": 50256, "eos_token_id": 50256,
    "transformers_version": "4.26.0.dev0",
}  # fmt: skip
GEMMA3_1B_GENERATION = {
    "bos_token_id": 2, "cache_implementation": "hybrid", "do_sample": True, "eos_token_id": [1, 106],
    "pad_token_id": 0, "top_k": 64, "top_p": 0.95, "transformers_version": "4.50.0.dev0",
}  # fmt: skip


def make_gpt2(out: Path, seed: int) -> int:
    cfg = GPT2_CONFIG
    size = write_model_files(out, seed, cfg, gpt2_specs(cfg), GPT2_GENERATION)
    write_gpt2_tokenizer_files(out, gpt2_full_tokenizer(cfg["vocab_size"]), cfg["n_positions"])
    return size


def make_gemma3_1b(out: Path, seed: int) -> int:
    cfg = GEMMA3_1B_CONFIG
    size = write_model_files(out, seed, cfg, gemma3_specs(cfg), GEMMA3_1B_GENERATION)
    write_gemma3_tokenizer_files(out, gemma3_tokenizer(cfg["vocab_size"]), cfg["max_position_embeddings"])
    return size


# ---- the Llama family and Gemma 3 4B (real configs, random weights) --------------------------

LLAMA32_ROPE = {
    "factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192, "rope_type": "llama3",
}  # fmt: skip
LLAMA32_1B_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
    "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": LLAMA32_ROPE, "rope_theta": 500000.0, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256,
}  # fmt: skip
LLAMA32_3B_CONFIG: dict[str, Any] = {
    **LLAMA32_1B_CONFIG, "head_dim": 128, "hidden_size": 3072, "intermediate_size": 8192,
    "num_attention_heads": 24, "num_hidden_layers": 28, "num_key_value_heads": 8,
}  # fmt: skip
QWEN25_05B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
    "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}  # fmt: skip
QWEN3_06B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02, "intermediate_size": 3072, "max_position_embeddings": 40960,
    "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 16, "num_hidden_layers": 28,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
    "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False, "vocab_size": 151936,
}  # fmt: skip
MISTRAL_7B_CONFIG: dict[str, Any] = {
    "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
    "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.42.0.dev0", "use_cache": True, "vocab_size": 32768,
}  # fmt: skip
GEMMA3_4B_CONFIG: dict[str, Any] = {
    "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999, "eoi_token_index": 256000,
    "eos_token_id": [1, 106], "image_token_index": 262144, "initializer_range": 0.02,
    "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {
        "hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text", "num_hidden_layers": 34,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024,
    },
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
    "vision_config": {
        "hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
        "model_type": "siglip_vision_model",
        "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False,
    },
}  # fmt: skip


def llama_specs(cfg: dict[str, Any], prefix: str = "model.") -> list[TensorSpec]:
    """Llama / Mistral / Qwen2 / Qwen3 tensors (Gemma 3's text model with gemma=True norms)."""
    h, ff, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nq
    mt = cfg["model_type"]
    gemma = mt == "gemma3_text"
    norm_mean = 0.0 if gemma else 1.0  # Gemma scales by 1 + w
    specs = [
        TensorSpec(prefix + "embed_tokens.weight", (vocab, h), "BF16"),
        TensorSpec(prefix + "norm.weight", (h,), "BF16", mean=norm_mean),
    ]
    if not gemma and not cfg.get("tie_word_embeddings", False):
        specs.append(TensorSpec("lm_head.weight", (vocab, h), "BF16"))
    for i in range(cfg["num_hidden_layers"]):
        p = f"{prefix}layers.{i}."
        specs += [
            TensorSpec(name, shape, "BF16", mean=norm_mean)
            if kind == "norm"
            else TensorSpec(name, shape, "BF16")
            for name, shape, kind in llama_layer(p, h, nq, nkv, hd, ff)
        ]
        if mt == "qwen2":
            specs += [
                TensorSpec(p + "self_attn.q_proj.bias", (nq * hd,), "BF16"),
                TensorSpec(p + "self_attn.k_proj.bias", (nkv * hd,), "BF16"),
                TensorSpec(p + "self_attn.v_proj.bias", (nkv * hd,), "BF16"),
            ]
        if mt in ("qwen3", "gemma3_text"):
            specs += [
                TensorSpec(p + "self_attn.q_norm.weight", (hd,), "BF16", mean=norm_mean),
                TensorSpec(p + "self_attn.k_norm.weight", (hd,), "BF16", mean=norm_mean),
            ]
        if gemma:
            specs += [
                TensorSpec(p + "pre_feedforward_layernorm.weight", (h,), "BF16"),
                TensorSpec(p + "post_feedforward_layernorm.weight", (h,), "BF16"),
            ]
    return specs


def siglip_specs(vc: dict[str, Any], text_hidden: int) -> list[TensorSpec]:
    """Gemma 3's vision tower and projector as the 4.x-saved hub files name them."""
    d, ff, ps = vc["hidden_size"], vc["intermediate_size"], vc["patch_size"]
    v = "vision_tower.vision_model."
    specs = [
        TensorSpec(v + "embeddings.patch_embedding.weight", (d, 3, ps, ps), "BF16"),
        TensorSpec(v + "embeddings.patch_embedding.bias", (d,), "BF16"),
        TensorSpec(v + "embeddings.position_embedding.weight", ((vc["image_size"] // ps) ** 2, d), "BF16"),
        TensorSpec(v + "post_layernorm.weight", (d,), "BF16", mean=1.0),
        TensorSpec(v + "post_layernorm.bias", (d,), "BF16"),
        TensorSpec("multi_modal_projector.mm_input_projection_weight", (d, text_hidden), "BF16"),
        TensorSpec("multi_modal_projector.mm_soft_emb_norm.weight", (d,), "BF16"),
    ]
    for i in range(vc["num_hidden_layers"]):
        p = f"{v}encoder.layers.{i}."
        for x in ("q", "k", "v", "out"):
            specs += [TensorSpec(p + f"self_attn.{x}_proj.weight", (d, d), "BF16"),
                      TensorSpec(p + f"self_attn.{x}_proj.bias", (d,), "BF16")]  # fmt: skip
        for x in ("layer_norm1", "layer_norm2"):
            specs += [
                TensorSpec(p + f"{x}.weight", (d,), "BF16", mean=1.0),
                TensorSpec(p + f"{x}.bias", (d,), "BF16"),
            ]
        specs += [
            TensorSpec(p + "mlp.fc1.weight", (ff, d), "BF16"), TensorSpec(p + "mlp.fc1.bias", (ff,), "BF16"),
            TensorSpec(p + "mlp.fc2.weight", (d, ff), "BF16"), TensorSpec(p + "mlp.fc2.bias", (d,), "BF16"),
        ]  # fmt: skip
    return specs


def special_tokenizer(
    leading: tuple[str, ...], fill_to: int, trailing: list[str], bos: str | None
) -> Tokenizer:
    """Trained BPE with `leading` specials first, fillers up to fill_to ids, then `trailing`
    specials (at their real ids); BOS added by the post-processor when given."""
    from tokenizers import AddedToken

    tok = pad_vocab(train_byte_level_bpe(TRAINED_VOCAB, leading), fill_to)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in trailing])
    if bos is not None:
        bid = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bid)]
        )
    return tok


LLAMA3_SPECIAL = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
]  # fmt: skip


def _tokenizer_files(out: Path, tok: Tokenizer, bos: str | None, eos: str, template: str, n_pos: int) -> None:
    tok.save(str(out / "tokenizer.json"))
    write_json(
        out / "tokenizer_config.json",
        {"bos_token": bos, "eos_token": eos, "chat_template": template, "clean_up_tokenization_spaces": False,
         "model_max_length": n_pos, "tokenizer_class": "PreTrainedTokenizerFast"},
    )  # fmt: skip


def make_llama_family(cfg: dict[str, Any], family: str) -> Callable[[Path, int], int]:
    def make(out: Path, seed: int) -> int:
        n_pos = cfg["max_position_embeddings"]
        if family == "llama":
            tok = special_tokenizer(
                (),
                128000,
                LLAMA3_SPECIAL + [f"<|reserved_special_token_{i}|>" for i in range(3, 248)],
                "<|begin_of_text|>",
            )
            gen = {
                "bos_token_id": 128000,
                "eos_token_id": [128001, 128008, 128009],
                "do_sample": True,
                "temperature": 0.6,
                "top_p": 0.9,
            }
            _tokenizer_files(out, tok, "<|begin_of_text|>", "<|eot_id|>", LLAMA3_TEMPLATE, n_pos)
        elif family == "mistral":
            tok = special_tokenizer(("<unk>", "<s>", "</s>"), cfg["vocab_size"], [], "<s>")
            gen = {"bos_token_id": 1, "eos_token_id": 2}
            _tokenizer_files(out, tok, "<s>", "</s>", MISTRAL_TEMPLATE, n_pos)
        else:
            tok = special_tokenizer((), 151643, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None)
            gen = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
                   "do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20}  # fmt: skip
            _tokenizer_files(out, tok, None, "<|im_end|>", CHATML_TEMPLATE, n_pos)
        return write_model_files(out, seed, cfg, llama_specs(cfg), gen)

    return make


def make_gemma3_4b(out: Path, seed: int) -> int:
    cfg = GEMMA3_4B_CONFIG
    text = {
        "model_type": "gemma3_text", "vocab_size": 262208, "num_attention_heads": 8, "num_key_value_heads": 4,
        "head_dim": 256, **cfg["text_config"],
    }  # fmt: skip
    specs = llama_specs(text, "language_model.model.") + siglip_specs(
        cfg["vision_config"], text["hidden_size"]
    )
    size = write_model_files(
        out, seed, cfg, specs, {"bos_token_id": 2, "eos_token_id": [1, 106], "pad_token_id": 0}
    )
    write_gemma3_tokenizer_files(out, gemma3_tokenizer(262144), 131072)
    return size


ARCHITECTURES: dict[str, Callable[[Path, int], int]] = {
    "gpt2": make_gpt2,
    "gemma3-1b": make_gemma3_1b,
    "gemma3": make_gemma3_4b,  # Gemma 3 4B (multimodal checkpoint; ~8.6 GB)
    "llama": make_llama_family(LLAMA32_1B_CONFIG, "llama"),  # Llama 3.2 1B (~2.5 GB)
    "llama-3b": make_llama_family(LLAMA32_3B_CONFIG, "llama"),  # Llama 3.2 3B (~6.4 GB)
    "qwen2": make_llama_family(QWEN25_05B_CONFIG, "qwen2"),  # Qwen2.5 0.5B (~1 GB)
    "qwen3": make_llama_family(QWEN3_06B_CONFIG, "qwen3"),  # Qwen3 0.6B (~1.2 GB)
    "mistral": make_llama_family(MISTRAL_7B_CONFIG, "mistral"),  # Mistral 7B v0.3 (~14.5 GB)
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Write a full-size random-weight checkpoint directory (config, tokenizer, one "
        "model.safetensors) shaped like the real hub checkpoint, for benchmarks.",
    )
    parser.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES))
    parser.add_argument("--out", type=Path, required=True, help="output directory (created)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    weights = ARCHITECTURES[args.arch](out, args.seed)
    elapsed = time.perf_counter() - start
    for p in sorted(out.iterdir()):
        print(f"  {p.name:<28} {p.stat().st_size / 1e6:10.1f} MB")
    print(f"{args.arch}: {weights / 1e6:.1f} MB of weights in {out} ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
