"""transformers' references for the tiny checkpoints of tests/support/checkpoints.py (dev-only).

    /work/venvs/ref/bin/python tools/make_conformance_refs.py   # torch 2.13.0 + transformers 4.x

For every case the checkpoint is generated (numpy, seeded), loaded by transformers in float32
with eager attention, and these are written to tests/fixtures/conformance-reference.json (+ .npz):
- the float32 logits of each reference sequence (the long one at STORED_POSITIONS only, to keep
  the fixture small; the short one at every position);
- greedy continuations (GREEDY_NEW tokens or up to an eos id of generation_config), one forward
  pass of the whole sequence per step;
- the chat template rendered and tokenized by transformers (apply_chat_template), and a plain text
  encoded with the tokenizer's special tokens (where BOS comes from);
- the RoPE inv_freq tables transformers computed (global and, for Gemma, local);
- weights_digest of the generated weights, the seeds and the library versions.
transformers 4.x cannot read the 5.x config keys (rope_parameters): such a case is loaded from a
copy of its config rewritten with 4.x keys, the same model in the older spelling.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "conformance-reference"
STORED_POSITIONS = [0, 1, 2, 7, 8, 9, 15, 16, 24, 31, 32, 33, 40, 44, 46, 47]
GREEDY_NEW = 8
CHAT = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Hello there!"},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "What is 2 + 2?"},
]
TEXT = "Hello world, ok?"


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "checkpoints", ROOT / "tests" / "support" / "checkpoints.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["checkpoints"] = mod
    spec.loader.exec_module(mod)
    return mod


def as_v4(cfg: dict[str, Any]) -> dict[str, Any]:
    out = dict(cfg)
    params = out.pop("rope_parameters", None)
    if params is not None:
        p = dict(params)
        out["rope_theta"] = p.pop("rope_theta")
        out["rope_scaling"] = None if p.get("rope_type") == "default" else p
    if "dtype" in out:
        out["torch_dtype"] = out.pop("dtype")
    return out


def load_model(directory: Path, multimodal: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, Gemma3ForConditionalGeneration

    cls = Gemma3ForConditionalGeneration if multimodal else AutoModelForCausalLM
    model, info = cls.from_pretrained(
        directory, torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"{directory.name}: loading info {bad}"
    return model.eval()


def rope_tables(model: Any, multimodal: bool) -> dict[str, list[float]]:
    inner = model.model.language_model if multimodal else model.model
    out = {"global": inner.rotary_emb.inv_freq.float().tolist()}
    if hasattr(inner, "rotary_emb_local"):
        out["local"] = inner.rotary_emb_local.inv_freq.float().tolist()
    return out


def main() -> None:
    import tokenizers
    import torch
    import transformers
    from transformers import AutoTokenizer

    gen = load_generator()
    torch.manual_seed(0)
    arrays: dict[str, np.ndarray] = {}
    cases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in gen.CASES.items():
            d = gen.write_checkpoint(name, Path(tmp) / name)
            cfg = json.loads((d / "config.json").read_text())
            if "rope_parameters" in cfg:
                v4 = Path(tmp) / (name + "-as-v4")
                shutil.copytree(d, v4)
                (v4 / "config.json").write_text(json.dumps(as_v4(cfg), indent=2))
                d = v4
            multimodal = cfg["model_type"] == "gemma3"
            model = load_model(d, multimodal)
            tok = AutoTokenizer.from_pretrained(d)
            eos = set(gen.generation_config(case)["eos_token_id"])
            seqs = gen.sequences(case)
            greedy = []
            with torch.no_grad():
                for i, seq in enumerate(seqs):
                    logits = model(torch.tensor([seq])).logits[0].float().numpy()
                    keep = STORED_POSITIONS if len(seq) == gen.SEQ_LEN else list(range(len(seq)))
                    arrays[f"{name}/{i}"] = np.ascontiguousarray(logits[keep], dtype=np.float32)
                    ids = list(seq)
                    new: list[int] = []
                    for _ in range(GREEDY_NEW):
                        t = int(model(torch.tensor([ids])).logits[0, -1].argmax())
                        new.append(t)
                        ids.append(t)
                        if t in eos:
                            break
                    greedy.append(new)
            chat = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True)
            cases[name] = {
                "digest": gen.weights_digest(name),
                "seed": case.seed,
                "sequences": seqs,
                "positions": [
                    STORED_POSITIONS if len(s) == gen.SEQ_LEN else list(range(len(s))) for s in seqs
                ],
                "greedy": greedy,
                "eos_token_id": sorted(eos),
                "chat_ids": [int(i) for i in chat],
                "text_ids": [int(i) for i in tok(TEXT).input_ids],
                "inv_freq": rope_tables(model, multimodal),
            }
            print(f"{name}: greedy {greedy}, chat {len(chat)} tokens")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT.with_suffix(".npz"), **arrays)
    meta = {
        "generator": "tests/support/checkpoints.py",
        "made_by": "tools/make_conformance_refs.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "numpy": np.__version__},
        "chat": CHAT,
        "text": TEXT,
        "cases": cases,
    }  # fmt: skip
    OUT.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    total = OUT.with_suffix(".npz").stat().st_size + OUT.with_suffix(".json").stat().st_size
    print(f"wrote {OUT}.json/.npz ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
