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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from make_fixtures import GPT2_EOS, train_byte_level_bpe, write_gpt2_tokenizer_files, write_json
from tokenizers import Tokenizer, processors

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

GPT2_CONFIG: dict[str, Any] = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 50257,
}

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


def make_gpt2(out: Path, seed: int) -> int:
    cfg = GPT2_CONFIG
    size = write_safetensors(out / "model.safetensors", gpt2_specs(cfg), seed)
    write_json(out / "config.json", cfg)
    write_json(
        out / "generation_config.json",
        {
            "_from_model_config": True,
            "bos_token_id": 50256,
            "eos_token_id": 50256,
            "transformers_version": "4.26.0.dev0",
        },
    )
    write_gpt2_tokenizer_files(out, gpt2_full_tokenizer(cfg["vocab_size"]), cfg["n_positions"])
    return size


def make_gemma3_1b(out: Path, seed: int) -> int:
    cfg = GEMMA3_1B_CONFIG
    size = write_safetensors(out / "model.safetensors", gemma3_specs(cfg), seed)
    write_json(out / "config.json", cfg)
    write_json(
        out / "generation_config.json",
        {
            "bos_token_id": 2,
            "cache_implementation": "hybrid",
            "do_sample": True,
            "eos_token_id": [1, 106],
            "pad_token_id": 0,
            "top_k": 64,
            "top_p": 0.95,
            "transformers_version": "4.50.0.dev0",
        },
    )
    write_gemma3_tokenizer_files(out, gemma3_tokenizer(cfg["vocab_size"]), cfg["max_position_embeddings"])
    return size


ARCHITECTURES: dict[str, Callable[[Path, int], int]] = {
    "gpt2": make_gpt2,
    "gemma3-1b": make_gemma3_1b,
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
