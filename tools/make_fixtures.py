"""Generate the model-conformance fixtures under tests/fixtures/ (dev-only: needs torch + transformers).

Regenerate with::

    pip install '.[dev]' torch==2.13.0 transformers
    python tools/make_fixtures.py                 # every architecture, into tests/fixtures
    python tools/make_fixtures.py --arch gpt2 --out /tmp/fixtures

torch and transformers are used here, and only here, as the *reference*: pyrustml never imports
them. The output is deterministic (fixed seeds, fixed zip timestamps) for a given
torch/transformers/tokenizers version; the versions used are recorded in the reference JSON.
Nothing is downloaded: the tokenizer is trained locally on the small English text in this file.

What ``--arch gpt2`` writes (all small enough to commit; about 1.5 MiB in all):

``gpt2-tiny-hf/``
    A tiny random ``GPT2LMHeadModel`` (n_layer=2, n_embd=64, n_head=4, n_positions=64,
    gelu_new, eps 1e-5, vocab = the tokenizer's) saved by ``save_pretrained(safe_serialization=True)``
    in float32: keys ``transformer.h.0.attn.c_attn.weight`` ... (Conv1D weights stored [in, out]);
    no ``lm_head.weight`` (tied to ``transformer.wte.weight``). config.json is written by
    transformers itself (so it carries that version's keys).
``gpt2-tiny-openai/``
    The same float32 weights in the layout of the real ``openai-community/gpt2`` model.safetensors:
    no ``transformer.`` prefix, no ``lm_head``, plus one ``h.N.attn.bias`` causal-mask buffer per
    layer (float32, shape (1, 1, n_positions, n_positions), ones on and below the diagonal), which
    is not a weight. No ``masked_bias`` (the real file has none). config.json and
    generation_config.json mimic the real checkpoint's 4.x-era files (``n_ctx``, ``summary_*`` ...).
``gpt2-tiny-sharded/``
    The same weights rounded to float16 (SHARDED_DTYPE), saved by transformers with a small
    ``max_shard_size``: several ``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``.
    Its reference is computed from the float16-rounded weights upcast to float32 (reloaded from
    disk with ``dtype=torch.float32``), so an engine that upcasts f16 -> f32 must match it as
    closely as the float32 checkpoints match theirs.
Each directory also holds tokenizer.json (byte-level BPE, ``<|endoftext|>`` as the last id, like
GPT-2), tokenizer_config.json, special_tokens_map.json and generation_config.json.

``gpt2-tiny-reference.json`` + ``gpt2-tiny-reference.npz``
    JSON: versions, ``vocab_size``, ``eos_token_id``, the three input ``sequences`` (lengths 1, 7,
    40), which reference each checkpoint directory must match (``checkpoints``), and per reference
    (``references.f32`` / ``references.f16``): ``greedy`` (20 new tokens per sequence, from a
    manual argmax loop over the full-sequence forward; EOS does not stop it),
    ``greedy_margins`` (top-1 minus top-2 logit at each greedy step: how robust each choice is) and
    ``logits_keys`` naming the arrays in the .npz: float32 logits of shape (len(sequence), vocab)
    at every position, from transformers' eager float32 forward (model.eval(), torch.no_grad()).
    Also ``prompts``: fixed texts and their token ids from the tokenizer (encode with special
    tokens; GPT-2 adds none; ``<|endoftext|>`` written in the text becomes id ``eos_token_id``).

What ``--arch gemma3`` writes (about 1.9 MiB; Gemma3ForCausalLM, model_type ``gemma3_text``):

``gemma3-tiny/``
    A tiny random model (GEMMA3_TINY: 6 layers = 5 sliding + 1 global, hidden 64, 4 heads, 2 KV
    heads, head_dim 24, query_pre_attn_scalar 20, sliding_window 8, RoPE 1e6 global / 1e4 local,
    final_logit_softcapping 30, tied embeddings, gelu_pytorch_tanh, vocab 401) in float32,
    model.safetensors written by transformers (keys ``model.embed_tokens.weight``,
    ``model.layers.N.self_attn.q_proj.weight`` ..., no ``lm_head``). config.json and
    generation_config.json are written here in the 4.x style real checkpoints carry
    (``rope_theta``, ``rope_local_base_freq``, ``sliding_window_pattern``, ``rope_scaling: null``).
``gemma3-tiny-v5/``
    Another tiny random model, same sizes but MQA (1 KV head, like gemma-3-1b), stored in
    bfloat16, all files as transformers 5 writes them: config.json with ``rope_parameters`` (per
    layer type) and ``layer_types`` (and also a private ``_sliding_window_pattern``). Its reference
    is from the bfloat16 weights upcast to float32.
Both hold a byte-level BPE tokenizer.json with Gemma's special tokens at their real ids (<pad> 0,
<eos> 1, <bos> 2, <start_of_turn> 105, <end_of_turn> 106; <bos> prepended on encode) and
tokenizer_config.json with the Gemma 3 chat template (both from make_random_model.py), and
generation_config.json with ``eos_token_id [1, 106]``. attn_logit_softcapping is null: transformers
5.24's Gemma3Attention does not pass it to the attention function, so it would not be tested.

``gemma3-tiny-reference.json`` + ``gemma3-tiny-reference.npz``
    As for GPT-2 (references ``f32`` from gemma3-tiny and ``bf16`` from gemma3-tiny-v5): sequences
    of lengths 1, 9, 30 (each starting with <bos>; 30 > the window), logits at every position, 40
    greedy tokens per sequence and their margins; ``quirk_effects`` (how far the logits move when
    the final softcap or the sliding window is switched off); ``chat``: a system + user + assistant
    + user conversation rendered by transformers' ``apply_chat_template(..., tokenize=False,
    add_generation_prompt=True)`` and its ids (encoded without adding a second <bos>); ``prompts``.

Tolerances: compare logits with a tolerance, never bitwise. torch's own float32 CPU result moves by
~1e-6 with nothing but the memory alignment of the weights (the openai-layout reload differs from
the hf-layout reload by ~1e-6), and an independent float64 numpy forward of these checkpoints
agrees with the stored logits to ~1e-5 (logits reach ~10 in magnitude).

Adding an architecture: write ``make_<arch>_fixtures(out: Path) -> dict[str, object]`` next to
``make_gpt2_fixtures`` and register it in ``ARCHITECTURES``; reuse ``train_byte_level_bpe``,
``write_json``, ``write_npz`` and ``reference_versions``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel

# A few paragraphs of plain English, written for this file, to train the fixture tokenizers on.
CORPUS: tuple[str, ...] = (
    "The small engine reads the model file from the disk, one tensor at a time. Each tensor has a "
    "name, a shape and a type, and the engine checks all three before it trusts a single byte. When "
    "the weights are in place, the engine turns the prompt into tokens, and the tokens into vectors.",
    "On a quiet morning the river was high and the boats stayed at the dock. The old man who kept the "
    "bridge said that the water would go down by the evening, and that the children should not play "
    "near the bank until then. Nobody argued with him; he had seen the river for sixty years.",
    "A language model does not know what a word means. It knows which pieces of text tend to follow "
    "which other pieces, and it knows this very well. Given the start of a sentence, it gives a "
    "score to every token in its vocabulary, and the highest score is often the word you expected.",
    "She opened the window, looked at the garden, and decided that the roses could wait another day. "
    "There were letters to write, a train to catch at ten, and a cake in the oven that would not "
    "bake itself. The cat, as usual, had other plans and sat on the letters.",
    "Numbers matter too: 1, 2, 3, 10, 42, 100 and 2024 appear in text, as do dates like 12 May and "
    "times like 09:30. Code has its own words: def, return, import, print(x), for i in range(10).",
)

# Fixed texts whose token ids are stored, for tokenizer round-trip tests.
PROMPTS: tuple[str, ...] = (
    "The small engine reads the model file.",
    "  Hello,\nworld!\t42 tokens<|endoftext|>and more",
    "caf\u00e9 na\u00efve \u4e2d\u6587 \U0001f600 \u00fc",
)

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
GPT2_EOS = "<|endoftext|>"
SHARDED_DTYPE = "float16"  # dtype of gpt2-tiny-sharded; "bfloat16" also works (reference key follows)
# Weight seed and embedding scale: of seeds 0..59 with WTE_STD 0.3, seed 49 gives the largest smallest
# top-1/top-2 logit margin over all 60 greedy steps (f32 and f16 alike, ~0.048) with varied output.
TORCH_SEED = 49
WTE_STD = 0.3
SEQ_SEED = 5678
GREEDY_NEW_TOKENS = 20


# ----------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------


def train_byte_level_bpe(vocab_size: int, leading_special_tokens: Sequence[str] = ()) -> Tokenizer:
    """A GPT-2-style byte-level BPE trained on CORPUS.

    Ids: ``leading_special_tokens`` first (0..k-1), then the 256-symbol byte-level alphabet, then the
    learned merges, ``vocab_size`` in all (fewer if the corpus runs out of pairs). ByteLevel
    pre-tokenizer without prefix space, ByteLevel decoder and post-processor, as GPT-2's tokenizer.json.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(leading_special_tokens),
        show_progress=False,
    )
    tok.train_from_iterator(list(CORPUS), trainer)
    return tok


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez, but byte-for-byte reproducible (fixed zip timestamps); np.load reads it."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, buf.getvalue())


def reference_versions() -> dict[str, str]:
    import safetensors
    import tokenizers
    import torch
    import transformers

    return {
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "tokenizers": str(tokenizers.__version__),
        "safetensors": str(safetensors.__version__),
        "numpy": str(np.__version__),
    }


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------------------
# GPT-2
# ----------------------------------------------------------------------------------------------

GPT2_TINY = {"n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 64}
GPT2_TOKENIZER_VOCAB = 396  # BPE model size; + <|endoftext|> = 397 ids (prime: hits every loop tail)


def gpt2_tokenizer() -> Tokenizer:
    """Byte-level BPE with <|endoftext|> appended as the last id, like GPT-2 (50256)."""
    from tokenizers import AddedToken

    tok = train_byte_level_bpe(GPT2_TOKENIZER_VOCAB)
    tok.add_special_tokens([AddedToken(GPT2_EOS, special=True, normalized=False)])
    return tok


def write_gpt2_tokenizer_files(directory: Path, tok: Tokenizer, model_max_length: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    write_json(
        directory / "tokenizer_config.json",
        {
            "add_bos_token": False,
            "add_prefix_space": False,
            "bos_token": GPT2_EOS,
            "clean_up_tokenization_spaces": False,
            "eos_token": GPT2_EOS,
            "errors": "replace",
            "model_max_length": model_max_length,
            "tokenizer_class": "GPT2Tokenizer",
            "unk_token": GPT2_EOS,
        },
    )
    write_json(
        directory / "special_tokens_map.json",
        {"bos_token": GPT2_EOS, "eos_token": GPT2_EOS, "unk_token": GPT2_EOS},
    )


def _init_gpt2_weights(model: GPT2LMHeadModel, seed: int) -> None:
    """Large random weights, so logits are far from uniform and greedy decoding is non-trivial."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head appears once (as wte)
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if ".ln_" in name:  # ln_1, ln_2, ln_f
                p.copy_(1.0 + 0.1 * noise if name.endswith(".weight") else 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            elif name == "transformer.wte.weight":  # also the lm_head: sets the logits' spread
                p.copy_(WTE_STD * noise)
            else:  # wpe, Conv1D weights
                p.copy_(0.2 * noise)


def gpt2_openai_config(cfg: dict[str, int], vocab_size: int, eos_id: int) -> dict[str, Any]:
    """config.json in the style of openai-community/gpt2 (4.x keys) at the given sizes (the tiny
    fixture here, the real model in make_random_model.py)."""
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": eos_id,
        "embd_pdrop": 0.1,
        "eos_token_id": eos_id,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": cfg["n_positions"],
        "n_embd": cfg["n_embd"],
        "n_head": cfg["n_head"],
        "n_layer": cfg["n_layer"],
        "n_positions": cfg["n_positions"],
        "resid_pdrop": 0.1,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "vocab_size": vocab_size,
    }


def _write_openai_layout(model: GPT2LMHeadModel, directory: Path, n_positions: int) -> list[str]:
    """model.safetensors as openai-community/gpt2 has it: no prefix, no lm_head, attn.bias masks."""
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight":
            continue  # tied to wte: the real checkpoint does not store it
        assert key.startswith("transformer."), key
        tensors[key.removeprefix("transformer.")] = value.detach().to(torch.float32).contiguous().clone()
    mask = torch.tril(torch.ones(n_positions, n_positions, dtype=torch.float32)).view(
        1, 1, n_positions, n_positions
    )
    for i in range(model.config.n_layer):
        tensors[f"h.{i}.attn.bias"] = mask.clone()
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return sorted(tensors)


def _lm_reference(
    model: torch.nn.Module, sequences: list[list[int]], new_tokens: int = GREEDY_NEW_TOKENS
) -> tuple[list[np.ndarray], list[list[int]], list[list[float]]]:
    """Float32 logits at every position, and a ``new_tokens`` greedy continuation, per sequence.

    Any transformers causal LM (GPT-2, Gemma 3): ``model(ids).logits`` of shape (1, len, vocab).
    """
    import torch

    logits_out: list[np.ndarray] = []
    greedy_out: list[list[int]] = []
    margins_out: list[list[float]] = []
    with torch.no_grad():
        for seq in sequences:
            logits = model(torch.tensor([seq], dtype=torch.long)).logits[0]
            logits_out.append(logits.to(torch.float32).numpy().copy())
            ids = list(seq)
            new: list[int] = []
            margins: list[float] = []
            for _ in range(new_tokens):
                # Full recompute each step (no KV cache): the plainest possible greedy decode.
                last = model(torch.tensor([ids], dtype=torch.long)).logits[0, -1].to(torch.float32)
                top2 = torch.topk(last, 2)
                nxt = int(torch.argmax(last))
                assert nxt == int(top2.indices[0])
                margins.append(float(top2.values[0] - top2.values[1]))
                new.append(nxt)
                ids.append(nxt)
            greedy_out.append(new)
            margins_out.append([round(m, 6) for m in margins])
    return logits_out, greedy_out, margins_out


def _assert_close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    err = float(np.max(np.abs(a - b)))
    assert err <= 1e-5 * max(1.0, float(np.max(np.abs(b)))), f"{what}: max |diff| {err}"


def _load_gpt2(directory: Path) -> GPT2LMHeadModel:
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(str(directory), dtype=torch.float32, attn_implementation="eager")
    model.train(False)  # = eval(): no dropout
    return model


def make_gpt2_fixtures(out: Path) -> dict[str, object]:
    import torch
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    tok = gpt2_tokenizer()
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    eos_id = tok.token_to_id(GPT2_EOS)
    assert eos_id == vocab_size - 1, (eos_id, vocab_size)
    n_pos = GPT2_TINY["n_positions"]

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_pos,
        n_embd=GPT2_TINY["n_embd"],
        n_layer=GPT2_TINY["n_layer"],
        n_head=GPT2_TINY["n_head"],
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(TORCH_SEED)
    model = GPT2LMHeadModel(config)
    _init_gpt2_weights(model, TORCH_SEED)
    model.set_attn_implementation("eager")  # the default (sdpa) rounds differently
    model.train(False)  # = eval(): no dropout
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=eos_id, eos_token_id=eos_id
    )

    dirs = {name: out / name for name in ("gpt2-tiny-hf", "gpt2-tiny-openai", "gpt2-tiny-sharded")}
    for d in dirs.values():
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    # 1. transformers layout, float32, one file.
    model.save_pretrained(str(dirs["gpt2-tiny-hf"]), safe_serialization=True)
    # 2. openai-community/gpt2 layout, float32, with 4.x-style config files.
    d = dirs["gpt2-tiny-openai"]
    openai_keys = _write_openai_layout(model, d, n_pos)
    write_json(d / "config.json", gpt2_openai_config(GPT2_TINY, vocab_size, eos_id))
    write_json(
        d / "generation_config.json",
        {
            "_from_model_config": True,
            "bos_token_id": eos_id,
            "eos_token_id": eos_id,
            "transformers_version": "4.26.0.dev0",  # as in the real openai-community/gpt2 file
        },
    )
    # 3. transformers layout, SHARDED_DTYPE, several shards + index.
    half = getattr(torch, SHARDED_DTYPE)
    model_half = GPT2LMHeadModel(config)
    model_half.load_state_dict(model.state_dict())
    model_half.to(half)
    model_half.generation_config = model.generation_config
    model_half.save_pretrained(
        str(dirs["gpt2-tiny-sharded"]), safe_serialization=True, max_shard_size="100KB"
    )
    del model_half
    for d in dirs.values():
        write_gpt2_tokenizer_files(d, tok, n_pos)

    # Sequences: unconditional start, a short one, and a long one touching ids 0 and vocab-1.
    rng = np.random.default_rng(SEQ_SEED)
    seq7 = [int(x) for x in rng.integers(0, vocab_size, size=7)]
    seq40 = [int(x) for x in rng.integers(0, vocab_size, size=40)]
    seq40[5], seq40[17] = 0, vocab_size - 1
    sequences = [[eos_id], seq7, seq40]
    assert max(len(s) for s in sequences) + GREEDY_NEW_TOKENS <= n_pos

    # References come from the checkpoints as written (reloaded), never from the in-memory model.
    ref_key = {"float16": "f16", "bfloat16": "bf16"}[SHARDED_DTYPE]
    arrays: dict[str, np.ndarray] = {}
    references: dict[str, object] = {}
    for key, src in (("f32", "gpt2-tiny-hf"), (ref_key, "gpt2-tiny-sharded")):
        logits, greedy, margins = _lm_reference(_load_gpt2(dirs[src]), sequences)
        names = [f"{key}_seq{i}" for i in range(len(sequences))]
        arrays.update(zip(names, logits, strict=True))
        references[key] = {
            "computed_from": src,
            "description": (
                "transformers GPT2LMHeadModel, eager attention, float32 forward on CPU"
                + ("" if key == "f32" else f", weights = the {SHARDED_DTYPE} checkpoint upcast to float32")
            ),
            "logits_keys": names,
            "greedy": greedy,
            "greedy_margins": margins,
        }
        # Self-check: the reloaded f32 checkpoint is the in-memory model. Not bitwise: torch's CPU
        # GEMV rounds differently when a weight is not 64-byte aligned, as mmapped safetensors are.
        if key == "f32":
            with torch.no_grad():
                for seq, lg in zip(sequences, logits, strict=True):
                    direct = model(torch.tensor([seq])).logits[0].numpy()
                    _assert_close(direct, lg, "reloaded hf checkpoint differs from the model")

    # The openai layout must load in transformers and give exactly the f32 reference.
    openai_model = _load_gpt2(dirs["gpt2-tiny-openai"])
    with torch.no_grad():
        for i, seq in enumerate(sequences):
            lg = openai_model(torch.tensor([seq])).logits[0].numpy()
            _assert_close(lg, arrays[f"f32_seq{i}"], "openai layout differs from hf layout")
    del openai_model

    write_npz(out / "gpt2-tiny-reference.npz", arrays)
    prompts = [
        {
            "text": text,
            "ids": tok.encode(text).ids,
            "decoded": tok.decode(tok.encode(text).ids, skip_special_tokens=False),
        }
        for text in PROMPTS
    ]
    shard_files = sorted(p.name for p in dirs["gpt2-tiny-sharded"].glob("*.safetensors"))
    reference = {
        "generator": "tools/make_fixtures.py",
        "versions": reference_versions(),
        "model": {**GPT2_TINY, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5},
        "vocab_size": vocab_size,
        "eos_token_id": eos_id,
        "seeds": {"torch": TORCH_SEED, "sequences": SEQ_SEED},
        "checkpoints": {
            "gpt2-tiny-hf": {"dtype": "float32", "layout": "transformers", "reference": "f32"},
            "gpt2-tiny-openai": {
                "dtype": "float32",
                "layout": "openai-community/gpt2",
                "reference": "f32",
                "keys": openai_keys,
            },
            "gpt2-tiny-sharded": {
                "dtype": SHARDED_DTYPE,
                "layout": "transformers",
                "reference": ref_key,
                "shards": shard_files,
            },
        },
        "logits_file": "gpt2-tiny-reference.npz",
        "sequences": sequences,
        "greedy_new_tokens": GREEDY_NEW_TOKENS,
        "greedy_method": "argmax of the last position's logits over a full forward of prompt+generated "
        "ids, repeated; EOS does not stop it",
        "references": references,
        "prompts": prompts,
    }
    write_json(out / "gpt2-tiny-reference.json", reference)
    return {
        "vocab_size": vocab_size,
        "shards": shard_files,
        "min_greedy_margin": {
            k: min(min(m) for m in v["greedy_margins"])  # type: ignore[index]
            for k, v in references.items()
        },
    }


# ----------------------------------------------------------------------------------------------
# Gemma 3 (gemma3_text)
# ----------------------------------------------------------------------------------------------

# Tiny sizes that still exercise every Gemma 3 quirk: 6 layers (5 sliding + 1 global, the real
# pattern), GQA with 2 KV heads, head_dim 24 != hidden/heads (16) and 4*24 = 96 != hidden,
# query_pre_attn_scalar 20 != head_dim, a sliding window of 8 (shorter than the 30-token sequence),
# distinct local/global RoPE bases, and final logit softcapping (null in the real 1B, supported by
# the architecture). attn_logit_softcapping stays null: transformers 5.24's Gemma3Attention never
# passes it to the attention function, so it would have no effect on the reference.
GEMMA3_TINY: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 24,
    "query_pre_attn_scalar": 20,
    "sliding_window": 8,
    "sliding_window_pattern": 6,
    "max_position_embeddings": 128,
    "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10_000.0,
    "rms_norm_eps": 1e-6,
    "final_logit_softcapping": 30.0,
    "attn_logit_softcapping": None,
    "hidden_activation": "gelu_pytorch_tanh",
}
GEMMA3_V5_KV_HEADS = 1  # gemma3-tiny-v5 is MQA, like the real gemma-3-1b
GEMMA3_V5_DTYPE = "bfloat16"
GEMMA3_TOKENIZER_VOCAB = 401  # 107 specials (<pad>..<end_of_turn>) + 256 bytes + 38 merges; prime
GEMMA3_BOS, GEMMA3_EOS, GEMMA3_EOT = 2, 1, 106
# Weights (see _init_gemma3_weights): a small embedding, so that the residual stream is not dominated
# by the current token's own row (with a tied lm_head that makes greedy decoding repeat the last
# token forever), and a large final norm weight (scale 1 + 31 = 32), so the logits still spread
# widely (|logit| up to ~20: the final softcap at 30 matters). Weights this large make a 6-layer,
# 64-wide model amplify Q8_0 rounding unevenly: over seeds 0..39 the worst-position cosine of Q8_0
# to f32 logits ranges 0.994-0.998 (the full-size random Gemma 3 1B gives 0.9983). The seed is the
# one with the largest smallest top-1/top-2 greedy margin (over all 120 steps) among the seeds
# whose Q8_0 cosine reaches the conformance bound 0.998 (7 of 40): seed 7, margin 0.013 (the
# f32 tolerance is 1e-4). gemma3-tiny-v5 (seed 0, MQA, bf16) met both without a search.
GEMMA3_SEED = 7
GEMMA3_V5_SEED = 0
GEMMA3_EMB_STD = 0.03
GEMMA3_LINEAR_STD = 0.2
GEMMA3_NORM_STD = 0.2
GEMMA3_FINAL_NORM_MEAN = 31.0
GEMMA3_SEQ_SEED = 4321
GEMMA3_SEQ_LENGTHS = (1, 9, 30)
GEMMA3_GREEDY_NEW_TOKENS = 40
GEMMA3_CHAT: tuple[dict[str, str], ...] = (
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What does the small engine read first?"},
    {"role": "assistant", "content": "  The model file, one tensor at a time.\n"},
    {"role": "user", "content": "And then?\n"},
)
GEMMA3_PROMPTS: tuple[str, ...] = (
    "The small engine reads the model file.",
    "<start_of_turn>user\nHello,\nworld!\t42<end_of_turn>\n",
    "caf\u00e9 na\u00efve \u4e2d\u6587 \U0001f600",
)


def gemma3_fixture_tokenizer() -> Tokenizer:
    """Byte-level BPE with Gemma's special tokens at their real ids, <bos> prepended on encode.

    make_random_model.gemma3_tokenizer, with a small trained vocabulary instead of fillers.
    """
    from make_random_model import GEMMA3_SPECIAL
    from tokenizers import processors

    tok = train_byte_level_bpe(GEMMA3_TOKENIZER_VOCAB, GEMMA3_SPECIAL)
    for token, expected in (
        ("<pad>", 0),
        ("<eos>", GEMMA3_EOS),
        ("<bos>", GEMMA3_BOS),
        ("<unk>", 3),
        ("<start_of_turn>", 105),
        ("<end_of_turn>", GEMMA3_EOT),
    ):
        assert tok.token_to_id(token) == expected, token
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", GEMMA3_BOS)]
    )
    return tok


def _gemma3_layer_types(cfg: dict[str, Any]) -> list[str]:
    pattern = int(cfg["sliding_window_pattern"])
    return [
        "full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
        for i in range(int(cfg["num_hidden_layers"]))
    ]


def _gemma3_config_4x(cfg: dict[str, Any], vocab_size: int, dtype: str) -> dict[str, Any]:
    """config.json as real Gemma 3 checkpoints carry it (4.x keys: rope_theta,
    rope_local_base_freq, sliding_window_pattern, rope_scaling null), with the tiny sizes."""
    from make_random_model import GEMMA3_1B_CONFIG

    out = {**GEMMA3_1B_CONFIG, **cfg, "vocab_size": vocab_size, "torch_dtype": dtype}
    assert set(out) == set(GEMMA3_1B_CONFIG), set(out) ^ set(GEMMA3_1B_CONFIG)
    return dict(sorted(out.items()))


def _gemma3_generation_config() -> dict[str, Any]:
    """generation_config.json as google/gemma-3-1b-it has it."""
    return {
        "bos_token_id": GEMMA3_BOS,
        "cache_implementation": "hybrid",
        "do_sample": True,
        "eos_token_id": [GEMMA3_EOS, GEMMA3_EOT],
        "pad_token_id": 0,
        "top_k": 64,
        "top_p": 0.95,
        "transformers_version": "4.50.0.dev0",
    }


def _gemma3_model(cfg: dict[str, Any], vocab_size: int, num_kv_heads: int, seed: int) -> Any:
    """A Gemma3ForCausalLM in float32 with large random weights (see _init_gemma3_weights)."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=num_kv_heads,
        head_dim=cfg["head_dim"],
        query_pre_attn_scalar=cfg["query_pre_attn_scalar"],
        sliding_window=cfg["sliding_window"],
        layer_types=_gemma3_layer_types(cfg),
        max_position_embeddings=cfg["max_position_embeddings"],
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": cfg["rope_theta"]},
            "sliding_attention": {"rope_type": "default", "rope_theta": cfg["rope_local_base_freq"]},
        },
        rms_norm_eps=cfg["rms_norm_eps"],
        final_logit_softcapping=cfg["final_logit_softcapping"],
        attn_logit_softcapping=cfg["attn_logit_softcapping"],
        hidden_activation=cfg["hidden_activation"],
        tie_word_embeddings=True,
        bos_token_id=GEMMA3_BOS,
        eos_token_id=[GEMMA3_EOS, GEMMA3_EOT],
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    _init_gemma3_weights(model, seed)
    model.set_attn_implementation("eager")
    model.train(False)
    return model


def _init_gemma3_weights(model: torch.nn.Module, seed: int) -> None:
    """Large random weights: embedding (also the tied lm_head) N(0, EMB_STD), projections
    N(0, LINEAR_STD), RMSNorm weights N(0, NORM_STD) (Gemma scales by 1 + w), except the final
    norm's, N(FINAL_NORM_MEAN, NORM_STD)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head appears once (as embed_tokens)
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name == "model.norm.weight":  # the final norm also sets the logits' spread
                p.copy_(GEMMA3_FINAL_NORM_MEAN + GEMMA3_NORM_STD * noise)
            elif name.endswith("norm.weight"):  # 4 per layer, q_norm, k_norm
                p.copy_(GEMMA3_NORM_STD * noise)
            elif name == "model.embed_tokens.weight":
                p.copy_(GEMMA3_EMB_STD * noise)
            else:
                assert name.endswith("_proj.weight"), name
                p.copy_(GEMMA3_LINEAR_STD * noise)


def _load_gemma3(directory: Path) -> torch.nn.Module:
    import torch
    from transformers import Gemma3ForCausalLM

    model = Gemma3ForCausalLM.from_pretrained(
        str(directory), dtype=torch.float32, attn_implementation="eager"
    )
    model.train(False)
    assert isinstance(model, torch.nn.Module)
    return model


def _gemma3_sequences(vocab_size: int) -> list[list[int]]:
    """BOS, then random ids; the long one (past the window) also holds ids 0, 106 and vocab-1."""
    rng = np.random.default_rng(GEMMA3_SEQ_SEED)
    sequences = [
        [GEMMA3_BOS] + [int(x) for x in rng.integers(0, vocab_size, size=n - 1)] for n in GEMMA3_SEQ_LENGTHS
    ]
    long = sequences[-1]
    long[4], long[11], long[20] = 0, GEMMA3_EOT, vocab_size - 1
    return sequences


def make_gemma3_fixtures(out: Path) -> dict[str, object]:
    import torch
    from make_random_model import write_gemma3_tokenizer_files
    from transformers import AutoTokenizer, GenerationConfig

    cfg = GEMMA3_TINY
    tok = gemma3_fixture_tokenizer()
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    assert vocab_size == GEMMA3_TOKENIZER_VOCAB, vocab_size
    n_pos = int(cfg["max_position_embeddings"])
    names = ("gemma3-tiny", "gemma3-tiny-v5")
    dirs = {name: out / name for name in names}
    for d in dirs.values():
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    # 1. gemma3-tiny: float32, GQA (2 KV heads), config.json / generation_config.json in the 4.x
    #    style of the real hub checkpoints (written here, not by transformers).
    model = _gemma3_model(cfg, vocab_size, int(cfg["num_key_value_heads"]), GEMMA3_SEED)
    d = dirs["gemma3-tiny"]
    model.save_pretrained(str(d), safe_serialization=True)
    write_json(d / "config.json", _gemma3_config_4x(cfg, vocab_size, "float32"))
    write_json(d / "generation_config.json", _gemma3_generation_config())
    # 2. gemma3-tiny-v5: other weights, MQA (1 KV head), GEMMA3_V5_DTYPE, files as transformers 5
    #    writes them (config.json with rope_parameters and layer_types).
    model_v5 = _gemma3_model(cfg, vocab_size, GEMMA3_V5_KV_HEADS, GEMMA3_V5_SEED)
    model_v5.to(getattr(torch, GEMMA3_V5_DTYPE))
    model_v5.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=GEMMA3_BOS, eos_token_id=[GEMMA3_EOS, GEMMA3_EOT], pad_token_id=0
    )
    model_v5.save_pretrained(str(dirs["gemma3-tiny-v5"]), safe_serialization=True)
    del model_v5
    for d in dirs.values():
        write_gemma3_tokenizer_files(d, tok, n_pos)

    # The config styles are what this fixture is for: check both.
    cfg_4x = json.loads((dirs["gemma3-tiny"] / "config.json").read_text(encoding="utf-8"))
    cfg_v5 = json.loads((dirs["gemma3-tiny-v5"] / "config.json").read_text(encoding="utf-8"))
    for key in ("rope_theta", "rope_local_base_freq", "sliding_window_pattern", "rope_scaling"):
        assert key in cfg_4x and key not in cfg_v5, key
    for key in ("rope_parameters", "layer_types"):
        assert key in cfg_v5 and key not in cfg_4x, key

    sequences = _gemma3_sequences(vocab_size)
    assert max(len(s) for s in sequences) + GEMMA3_GREEDY_NEW_TOKENS <= n_pos

    # References come from the checkpoints as written (reloaded), never from the in-memory model.
    v5_key = {"float16": "f16", "bfloat16": "bf16"}[GEMMA3_V5_DTYPE]
    arrays: dict[str, np.ndarray] = {}
    references: dict[str, object] = {}
    effects: dict[str, float] = {}
    for key, src in (("f32", "gemma3-tiny"), (v5_key, "gemma3-tiny-v5")):
        loaded = _load_gemma3(dirs[src])
        lc: Any = loaded.config
        assert lc.layer_types == _gemma3_layer_types(cfg), lc.layer_types
        assert lc.rope_parameters["full_attention"]["rope_theta"] == cfg["rope_theta"]
        assert lc.rope_parameters["sliding_attention"]["rope_theta"] == cfg["rope_local_base_freq"]
        logits, greedy, margins = _lm_reference(loaded, sequences, GEMMA3_GREEDY_NEW_TOKENS)
        arr_names = [f"{key}_seq{i}" for i in range(len(sequences))]
        arrays.update(zip(arr_names, logits, strict=True))
        references[key] = {
            "computed_from": src,
            "description": (
                "transformers Gemma3ForCausalLM, eager attention, float32 forward on CPU"
                + ("" if key == "f32" else f", weights = the {GEMMA3_V5_DTYPE} checkpoint upcast to float32")
            ),
            "num_key_value_heads": int(lc.num_key_value_heads),
            "logits_keys": arr_names,
            "greedy": greedy,
            "greedy_margins": margins,
        }
        # How much the fixture depends on the quirks it is meant to test (max |logit change| on the
        # longest sequence when the quirk is switched off).
        seq = torch.tensor([sequences[-1]])
        with torch.no_grad():
            lc.final_logit_softcapping = None
            changed = loaded(seq).logits[0].numpy()
            effects[f"{key}_final_softcap"] = float(np.max(np.abs(changed - logits[-1])))
            lc.final_logit_softcapping = cfg["final_logit_softcapping"]
            lc.sliding_window = n_pos
            changed = loaded(seq).logits[0].numpy()
            effects[f"{key}_sliding_window"] = float(np.max(np.abs(changed - logits[-1])))
        del loaded
        if key == "f32":  # the reloaded checkpoint is the in-memory model (up to alignment rounding)
            with torch.no_grad():
                for s, lg in zip(sequences, logits, strict=True):
                    _assert_close(model(torch.tensor([s])).logits[0].numpy(), lg, "gemma3-tiny reload")
    del model
    # Each directory reloads and reproduces its stored logits (fresh load, after the checks above).
    for key, src in (("f32", "gemma3-tiny"), (v5_key, "gemma3-tiny-v5")):
        reloaded = _load_gemma3(dirs[src])
        with torch.no_grad():
            for i, s in enumerate(sequences):
                lg = reloaded(torch.tensor([s])).logits[0].numpy()
                _assert_close(lg, arrays[f"{key}_seq{i}"], f"{src} reload")
        del reloaded
    write_npz(out / "gemma3-tiny-reference.npz", arrays)

    # The chat template as transformers renders it, and its ids (the text already starts with <bos>).
    hf_tok = AutoTokenizer.from_pretrained(str(dirs["gemma3-tiny"]))
    messages = [dict(m) for m in GEMMA3_CHAT]
    chat_text = hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert isinstance(chat_text, str)
    chat_ids = [int(i) for i in hf_tok(chat_text, add_special_tokens=False)["input_ids"]]
    assert chat_ids == tok.encode(chat_text, add_special_tokens=False).ids
    assert chat_ids[0] == GEMMA3_BOS and chat_ids.count(GEMMA3_BOS) == 1, chat_ids
    prompts = [
        {
            "text": text,
            "ids": tok.encode(text).ids,
            "decoded": tok.decode(tok.encode(text).ids, skip_special_tokens=False),
        }
        for text in GEMMA3_PROMPTS
    ]
    for p in prompts:
        assert [int(i) for i in hf_tok(p["text"])["input_ids"]] == p["ids"], p["text"]

    reference = {
        "generator": "tools/make_fixtures.py",
        "versions": reference_versions(),
        "model": {k: v for k, v in cfg.items() if k != "num_key_value_heads"},
        "vocab_size": vocab_size,
        "bos_token_id": GEMMA3_BOS,
        "eos_token_id": [GEMMA3_EOS, GEMMA3_EOT],
        "seeds": {"torch": GEMMA3_SEED, "torch_v5": GEMMA3_V5_SEED, "sequences": GEMMA3_SEQ_SEED},
        "checkpoints": {
            "gemma3-tiny": {
                "dtype": "float32",
                "config_style": "4.x (rope_theta, rope_local_base_freq, sliding_window_pattern)",
                "num_key_value_heads": int(cfg["num_key_value_heads"]),
                "reference": "f32",
            },
            "gemma3-tiny-v5": {
                "dtype": GEMMA3_V5_DTYPE,
                "config_style": "transformers 5 (rope_parameters, layer_types)",
                "num_key_value_heads": GEMMA3_V5_KV_HEADS,
                "reference": v5_key,
            },
        },
        "layer_types": _gemma3_layer_types(cfg),
        "logits_file": "gemma3-tiny-reference.npz",
        "sequences": sequences,
        "greedy_new_tokens": GEMMA3_GREEDY_NEW_TOKENS,
        "greedy_method": "argmax of the last position's logits over a full forward of prompt+generated "
        "ids, repeated; EOS does not stop it",
        "quirk_effects": {k: round(v, 4) for k, v in sorted(effects.items())},
        "references": references,
        "chat": {
            "messages": messages,
            "add_generation_prompt": True,
            "text": chat_text,
            "ids": chat_ids,
            "method": "transformers AutoTokenizer.apply_chat_template(messages, tokenize=False, "
            "add_generation_prompt=True); ids = encode(text, add_special_tokens=False)",
        },
        "prompts": prompts,
    }
    write_json(out / "gemma3-tiny-reference.json", reference)
    return {
        "vocab_size": vocab_size,
        "min_greedy_margin": {
            k: min(min(m) for m in v["greedy_margins"])  # type: ignore[index]
            for k, v in references.items()
        },
        "distinct_greedy_tokens": {
            k: [len(set(g)) for g in v["greedy"]]  # type: ignore[index]
            for k, v in references.items()
        },
        "quirk_effects": reference["quirk_effects"],
        "sizes": {name: dir_size(d) for name, d in dirs.items()},
    }


# ----------------------------------------------------------------------------------------------
# registry and CLI
# ----------------------------------------------------------------------------------------------

# One entry per architecture: make_<arch>_fixtures(out) writes its files and returns a summary.
ARCHITECTURES: dict[str, Callable[[Path], dict[str, object]]] = {
    "gpt2": make_gpt2_fixtures,
    "gemma3": make_gemma3_fixtures,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write the tiny random checkpoints and transformers reference data used by the "
        "model-conformance tests (dev-only: needs torch and transformers).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder (default: the repository's tests/fixtures)",
    )
    parser.add_argument(
        "--arch",
        choices=sorted(ARCHITECTURES),
        action="append",
        help="architecture(s) to generate (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for arch in args.arch or sorted(ARCHITECTURES):
        summary = ARCHITECTURES[arch](out)
        print(f"{arch}: {json.dumps(summary)}")
    print(f"{out}: {dir_size(out) / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
