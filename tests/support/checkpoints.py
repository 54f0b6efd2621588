"""Tiny random-weight checkpoints of every architecture, written at test time in the hub's layouts.

numpy and the standard library only: the conformance tests (tests/test_conformance.py) and the
reference maker (tools/make_conformance_refs.py, which runs transformers on the same files)
both call write_checkpoint(name, directory). Only the references and the seeds below are
committed; weights_digest(name) is the sha256 of the weights a case generates, stored with its
reference, so a change to this generator cannot silently invalidate the references.

Each case is a CASES entry: the config.json as the hub has it (transformers 4.x keys, or 5.x keys
with rope_parameters / layer_types / dtype), the dtype of the weights (F32 or BF16, bfloat16
rounded to nearest even from float32), the seed, whether the safetensors are sharded with an
index (model.safetensors.index.json, real key names), and the tokenizer style. The tokenizer is
written by hand: byte-level BPE over the 256 bytes (ids 0..255 are the bytes) without merges,
then the family's special tokens; Llama-style tokenizers add BOS in their post-processor,
Qwen's add nothing. Chat templates are short ones in each family's format.

Weights: embeddings normal(0, 0.5); matrices normal(0, 1 / sqrt(fan_in)); biases normal(0, 0.1);
plain RMSNorm weights normal(1, 0.1), Gemma's (scaled by 1 + w) normal(0, 0.1). Values are drawn
tensor by tensor in sorted name order from one PCG64 stream.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VOCAB = 272  # 256 bytes + specials (+ unused ids up to this size)
SEQ_LEN = 48  # prompt length of the long reference sequence: past windows and original contexts

# ---- tokenizers --------------------------------------------------------------------------------


def byte_alphabet() -> list[str]:
    """The printable stand-in of each byte (GPT-2's byte-level BPE alphabet), indexed by byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return [table[b] for b in range(256)]


@dataclass(frozen=True)
class TokenizerStyle:
    specials: tuple[str, ...]  # ids 256, 257, ... in this order
    bos: str | None  # added by the post-processor when set
    eos: str  # tokenizer_config's eos_token
    gen_eos: tuple[str, ...]  # generation_config's eos_token_id list
    chat_template: str
    add_bos_token: bool | None  # tokenizer_config.json's key (None: absent)


LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

TOKENIZERS: dict[str, TokenizerStyle] = {
    "llama3": TokenizerStyle(
        ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        "<|begin_of_text|>", "<|eot_id|>", ("<|end_of_text|>", "<|eot_id|>"), LLAMA3_TEMPLATE, None,
    ),
    "chatml": TokenizerStyle(
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        None, "<|im_end|>", ("<|im_end|>", "<|endoftext|>"), CHATML_TEMPLATE, False,
    ),
    "mistral": TokenizerStyle(
        ("<unk>", "<s>", "</s>"), "<s>", "</s>", ("</s>",), MISTRAL_TEMPLATE, True,
    ),
    "gemma3": TokenizerStyle(
        ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
        "<bos>", "<eos>", ("<eos>", "<end_of_turn>"), GEMMA3_TEMPLATE, True,
    ),
}  # fmt: skip


def token_id(style: TokenizerStyle, token: str) -> int:
    return 256 + style.specials.index(token)


def tokenizer_json(style: TokenizerStyle) -> dict[str, Any]:
    added = [
        {"id": token_id(style, s), "content": s, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for s in style.specials
    ]  # fmt: skip
    if style.bos is not None:
        bos = style.bos
        post: dict[str, Any] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                {"SpecialToken": {"id": bos, "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": bos, "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {bos: {"id": bos, "ids": [token_id(style, bos)], "tokens": [bos]}},
        }
    else:
        post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": post,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {c: i for i, c in enumerate(byte_alphabet())}, "merges": [],
        },
    }  # fmt: skip


def write_tokenizer(directory: Path, style: TokenizerStyle, max_len: int) -> None:
    write_json(directory / "tokenizer.json", tokenizer_json(style))
    cfg: dict[str, Any] = {
        "bos_token": style.bos,
        "eos_token": style.eos,
        "chat_template": style.chat_template,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    if style.add_bos_token is not None:
        cfg["add_bos_token"] = style.add_bos_token
    write_json(directory / "tokenizer_config.json", cfg)


# ---- cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    config: dict[str, Any]
    dtype: str  # "F32" | "BF16"
    seed: int
    tokenizer: str  # a TOKENIZERS key
    shards: int = 1  # > 1: model-0000i-of-0000n.safetensors + model.safetensors.index.json
    key_layout: str = (
        "text"  # gemma3 multimodal: "v4" (language_model.model.*) | "v5" (model.language_model.*)
    )
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _llama_like(model_type: str, arch: str, **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architectures": [arch],
        "model_type": model_type,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": VOCAB,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.57.6",
    }
    cfg.update(over)
    return cfg


def _to_v5(cfg: dict[str, Any]) -> dict[str, Any]:
    """The same model described with transformers 5's keys: rope_parameters, dtype, layer_types."""
    out = copy.deepcopy(cfg)
    scaling = out.pop("rope_scaling", None) or {"rope_type": "default"}
    params = {k: v for k, v in scaling.items() if k != "type"}
    params.setdefault("rope_type", scaling.get("type", "default"))
    params["rope_theta"] = out.pop("rope_theta")
    out["rope_parameters"] = params
    out["dtype"] = out.pop("torch_dtype")
    out["transformers_version"] = "5.0.0"
    return out


LLAMA3_SCALING = {
    "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32, "rope_type": "llama3",
}  # fmt: skip
GEMMA3_TEXT = {
    "model_type": "gemma3_text",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "vocab_size": VOCAB,
    "sliding_window": 8,
    "sliding_window_pattern": 2,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "max_position_embeddings": 512,
    # Left to Gemma3TextConfig's defaults, as the real 4B/12B/27B configs leave them: rope_theta,
    # rope_local_base_freq, rms_norm_eps, query_pre_attn_scalar, hidden_activation.
}
SIGLIP_TINY = {
    "model_type": "siglip_vision_model",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 28,
    "patch_size": 14,
    "num_channels": 3,
    "vision_use_head": False,
}


def _gemma3_mm() -> dict[str, Any]:
    return {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "boi_token_index": 265,  # unused ids of the tiny vocabulary: text-only prompts never hold them
        "eoi_token_index": 266,
        "image_token_index": 267,
        "mm_tokens_per_image": 4,
        "initializer_range": 0.02,
        "text_config": dict(GEMMA3_TEXT),
        "vision_config": dict(SIGLIP_TINY),
        "torch_dtype": "bfloat16",
        "transformers_version": "4.50.0.dev0",
    }


CASES: dict[str, Case] = {
    # Llama 3.2: tied embeddings, llama3 rope scaling (original context 32 < the sequence), bf16,
    # sharded, BOS from the post-processor only (no add_bos_token key), eos [end_of_text, eot_id].
    "llama3-tied-bf16": Case(
        _llama_like("llama", "LlamaForCausalLM", tie_word_embeddings=True, rope_theta=500000.0,
                    rope_scaling=LLAMA3_SCALING, torch_dtype="bfloat16"),
        "BF16", 11, "llama3", shards=2,
    ),
    # Untied head, head_dim given (32, not 64 / 4), linear scaling, transformers 5 keys, f32.
    "llama-linear-v5-f32": Case(
        _to_v5(_llama_like("llama", "LlamaForCausalLM", head_dim=32,
                           rope_scaling={"type": "linear", "factor": 4.0})),
        "F32", 12, "llama3",
    ),
    # SmolLM2 / TinyLlama-like: attention_bias (q/k/v and o biases), tied, default RoPE, a
    # Llama-2-style tokenizer whose post-processor adds <s> and whose config says add_bos_token.
    "llama-attnbias-f32": Case(
        _llama_like("llama", "LlamaForCausalLM", attention_bias=True, tie_word_embeddings=True,
                    rope_theta=100000.0, num_key_value_heads=1),
        "F32", 18, "mistral",
    ),
    # Mistral: a sliding window (8) far shorter than the sequence on every layer.
    "mistral-window-bf16": Case(
        _llama_like("mistral", "MistralForCausalLM", sliding_window=8, torch_dtype="bfloat16",
                    rope_theta=1000000.0),
        "BF16", 13, "mistral", shards=3,
    ),
    # Qwen2.5: q/k/v biases, tied, no BOS; use_sliding_window with max_window_layers 1 of 3.
    "qwen2-window-f32": Case(
        _llama_like("qwen2", "Qwen2ForCausalLM", num_hidden_layers=3, tie_word_embeddings=True,
                    use_sliding_window=True, sliding_window=8, max_window_layers=1, rope_theta=1000000.0),
        "F32", 14, "chatml",
    ),
    "qwen2-bf16": Case(
        _llama_like("qwen2", "Qwen2ForCausalLM", use_sliding_window=False, sliding_window=32768,
                    max_window_layers=21, torch_dtype="bfloat16", rope_theta=1000000.0),
        "BF16", 15, "chatml", shards=2,
    ),
    # Qwen3: q_norm/k_norm, head_dim 32 given, tied, transformers 5 keys.
    "qwen3-v5-bf16": Case(
        _to_v5(_llama_like("qwen3", "Qwen3ForCausalLM", head_dim=32, tie_word_embeddings=True,
                           attention_bias=False, use_sliding_window=False, max_window_layers=28,
                           torch_dtype="bfloat16", rope_theta=1000000.0)),
        "BF16", 16, "chatml",
    ),
    # Gemma 3 4B+-shaped: Gemma3ForConditionalGeneration with a tiny vision tower, both key layouts.
    "gemma3-mm-v4": Case(_gemma3_mm(), "BF16", 17, "gemma3", shards=2, key_layout="v4"),
    "gemma3-mm-v5": Case(_gemma3_mm(), "F32", 17, "gemma3", key_layout="v5"),
}  # fmt: skip


def text_config(case: Case) -> dict[str, Any]:
    cfg = case.config
    return dict(cfg["text_config"]) if cfg["model_type"] == "gemma3" else cfg


def generation_config(case: Case) -> dict[str, Any]:
    style = TOKENIZERS[case.tokenizer]
    out: dict[str, Any] = {"eos_token_id": [token_id(style, t) for t in style.gen_eos], "do_sample": True}
    if style.bos is not None:
        out["bos_token_id"] = token_id(style, style.bos)
    elif "<|endoftext|>" in style.specials:  # Qwen names <|endoftext|> as bos, never adds it
        out["bos_token_id"] = token_id(style, "<|endoftext|>")
    return out


def sequences(case: Case) -> list[list[int]]:
    """The prompts of the reference: a long one (SEQ_LEN tokens) and a short one, byte tokens from
    a fixed stream, each led by BOS where the model has one."""
    rng = np.random.Generator(np.random.PCG64(1000 + case.seed))
    style = TOKENIZERS[case.tokenizer]
    lead = [token_id(style, style.bos)] if style.bos is not None else []
    long = [int(i) for i in rng.integers(32, 127, SEQ_LEN - len(lead))]
    short = [int(i) for i in rng.integers(32, 127, 5)]
    return [lead + long, lead + short]


# ---- weights -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    name: str
    shape: tuple[int, ...]
    kind: str  # "embed" | "matrix" | "bias" | "norm" | "gemma_norm"


def llama_layer(
    p: str, h: int, nq: int, nkv: int, hd: int, ff: int
) -> list[tuple[str, tuple[int, ...], str]]:
    """The norms and projections every Llama-style decoder layer holds, in checkpoint order:
    (name, shape, "norm" | "matrix"). tools/make_random_model.py writes the same at full size."""
    return [
        (p + "input_layernorm.weight", (h,), "norm"),
        (p + "post_attention_layernorm.weight", (h,), "norm"),
        (p + "self_attn.q_proj.weight", (nq * hd, h), "matrix"),
        (p + "self_attn.k_proj.weight", (nkv * hd, h), "matrix"),
        (p + "self_attn.v_proj.weight", (nkv * hd, h), "matrix"),
        (p + "self_attn.o_proj.weight", (h, nq * hd), "matrix"),
        (p + "mlp.gate_proj.weight", (ff, h), "matrix"),
        (p + "mlp.up_proj.weight", (ff, h), "matrix"),
        (p + "mlp.down_proj.weight", (h, ff), "matrix"),
    ]


def _text_specs(cfg: dict[str, Any], prefix: str, gemma: bool) -> list[Spec]:
    h, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nq
    mt = cfg["model_type"]
    norm = "gemma_norm" if gemma else "norm"
    specs = [Spec(prefix + "embed_tokens.weight", (v, h), "embed"), Spec(prefix + "norm.weight", (h,), norm)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"{prefix}layers.{i}."
        specs += [
            Spec(name, shape, norm if kind == "norm" else kind)
            for name, shape, kind in llama_layer(p, h, nq, nkv, hd, ff)
        ]
        if mt == "qwen2" or cfg.get("attention_bias"):
            specs += [
                Spec(p + f"self_attn.{x}_proj.bias", (n * hd,), "bias")
                for x, n in (("q", nq), ("k", nkv), ("v", nkv))
            ]
        if cfg.get("attention_bias"):
            specs.append(Spec(p + "self_attn.o_proj.bias", (h,), "bias"))
        if mt in ("qwen3", "gemma3_text"):
            specs += [
                Spec(p + "self_attn.q_norm.weight", (hd,), norm),
                Spec(p + "self_attn.k_norm.weight", (hd,), norm),
            ]
        if gemma:
            specs += [
                Spec(p + "pre_feedforward_layernorm.weight", (h,), norm),
                Spec(p + "post_feedforward_layernorm.weight", (h,), norm),
            ]
    return specs


def _vision_specs(vc: dict[str, Any], text_hidden: int, prefix: str) -> list[Spec]:
    """SigLIP's tensors and Gemma 3's projector, as Gemma3ForConditionalGeneration holds them."""
    d, ff, ps, ch = vc["hidden_size"], vc["intermediate_size"], vc["patch_size"], vc["num_channels"]
    n_pos = (vc["image_size"] // ps) ** 2
    v = prefix + "vision_tower.vision_model."
    specs = [
        Spec(v + "embeddings.patch_embedding.weight", (d, ch, ps, ps), "matrix"),
        Spec(v + "embeddings.patch_embedding.bias", (d,), "bias"),
        Spec(v + "embeddings.position_embedding.weight", (n_pos, d), "embed"),
        Spec(v + "post_layernorm.weight", (d,), "norm"),
        Spec(v + "post_layernorm.bias", (d,), "bias"),
        Spec(prefix + "multi_modal_projector.mm_input_projection_weight", (d, text_hidden), "matrix"),
        Spec(prefix + "multi_modal_projector.mm_soft_emb_norm.weight", (d,), "gemma_norm"),
    ]
    for i in range(vc["num_hidden_layers"]):
        p = f"{v}encoder.layers.{i}."
        for x in ("q", "k", "v", "out"):
            specs += [
                Spec(p + f"self_attn.{x}_proj.weight", (d, d), "matrix"),
                Spec(p + f"self_attn.{x}_proj.bias", (d,), "bias"),
            ]
        specs += [
            Spec(p + "layer_norm1.weight", (d,), "norm"), Spec(p + "layer_norm1.bias", (d,), "bias"),
            Spec(p + "layer_norm2.weight", (d,), "norm"), Spec(p + "layer_norm2.bias", (d,), "bias"),
            Spec(p + "mlp.fc1.weight", (ff, d), "matrix"), Spec(p + "mlp.fc1.bias", (ff,), "bias"),
            Spec(p + "mlp.fc2.weight", (d, ff), "matrix"), Spec(p + "mlp.fc2.bias", (d,), "bias"),
        ]  # fmt: skip
    return specs


def specs_of(case: Case) -> list[Spec]:
    cfg = case.config
    if cfg["model_type"] == "gemma3":
        text = cfg["text_config"]
        lm = {"v4": "language_model.model.", "v5": "model.language_model."}[case.key_layout]
        outer = {"v4": "", "v5": "model."}[case.key_layout]
        return _text_specs(text, lm, True) + _vision_specs(cfg["vision_config"], text["hidden_size"], outer)
    specs = _text_specs(cfg, "model.", False)
    if not cfg.get("tie_word_embeddings", False):
        specs.append(Spec("lm_head.weight", (cfg["vocab_size"], cfg["hidden_size"]), "matrix"))
    return specs


def _values(spec: Spec, rng: np.random.Generator) -> np.ndarray:
    n = math.prod(spec.shape)
    z = rng.standard_normal(n, dtype=np.float32)
    if spec.kind == "embed":
        z *= np.float32(0.5)
    elif spec.kind == "matrix":
        z *= np.float32(1.0 / math.sqrt(math.prod(spec.shape[1:])))
    elif spec.kind in ("bias", "gemma_norm"):
        z *= np.float32(0.1)
    else:  # plain norm weight
        z = z * np.float32(0.1) + np.float32(1.0)
    return z.reshape(spec.shape)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, round to nearest even (no NaNs here)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)).astype("<u2")


def tensors(case: Case) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (safetensors dtype, little-endian array as stored)."""
    rng = np.random.Generator(np.random.PCG64(case.seed))
    out: dict[str, tuple[str, np.ndarray]] = {}
    for spec in sorted(specs_of(case), key=lambda s: s.name):
        v = _values(spec, rng)
        out[spec.name] = ("BF16", bf16_bits(v)) if case.dtype == "BF16" else ("F32", v.astype("<f4"))
    return out


def safetensors_bytes(items: list[tuple[str, str, np.ndarray]]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, arr in items:
        header[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + b"".join(a.tobytes() for _, _, a in items)


def weights_digest(name: str) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for tname, (dtype, arr) in tensors(CASES[name]).items():
        h.update(f"{tname}|{dtype}|{list(arr.shape)}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_checkpoint(name: str, directory: Path) -> Path:
    """The case's checkpoint directory (config, generation config, tokenizer, safetensors)."""
    case = CASES[name]
    directory.mkdir(parents=True, exist_ok=True)
    items = [(n, d, a) for n, (d, a) in tensors(case).items()]
    if case.shards == 1:
        (directory / "model.safetensors").write_bytes(safetensors_bytes(items))
    else:
        weight_map: dict[str, str] = {}
        per = -(-len(items) // case.shards)
        for s in range(case.shards):
            part = items[s * per : (s + 1) * per]
            fname = f"model-{s + 1:05d}-of-{case.shards:05d}.safetensors"
            (directory / fname).write_bytes(safetensors_bytes(part))
            weight_map.update({n: fname for n, _, _ in part})
        total = sum(a.nbytes for _, _, a in items)
        write_json(
            directory / "model.safetensors.index.json",
            {"metadata": {"total_size": total}, "weight_map": weight_map},
        )
    write_json(directory / "config.json", case.config)
    write_json(directory / "generation_config.json", generation_config(case))
    write_tokenizer(directory, TOKENIZERS[case.tokenizer], text_config(case)["max_position_embeddings"])
    return directory
