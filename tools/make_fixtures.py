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


def _gpt2_openai_config(cfg: dict[str, int], vocab_size: int, eos_id: int) -> dict[str, Any]:
    """config.json in the style of openai-community/gpt2 (4.x keys), with the tiny sizes."""
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


def _gpt2_reference(
    model: GPT2LMHeadModel, sequences: list[list[int]]
) -> tuple[list[np.ndarray], list[list[int]], list[list[float]]]:
    """Float32 logits at every position, and a 20-token greedy continuation, per sequence."""
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
            for _ in range(GREEDY_NEW_TOKENS):
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
    write_json(d / "config.json", _gpt2_openai_config(GPT2_TINY, vocab_size, eos_id))
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
        logits, greedy, margins = _gpt2_reference(_load_gpt2(dirs[src]), sequences)
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
# registry and CLI
# ----------------------------------------------------------------------------------------------

# One entry per architecture: make_<arch>_fixtures(out) writes its files and returns a summary.
# Gemma 3 (gemma3_text) goes here as "gemma3": make_gemma3_fixtures.
ARCHITECTURES: dict[str, Callable[[Path], dict[str, object]]] = {
    "gpt2": make_gpt2_fixtures,
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
