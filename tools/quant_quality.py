"""How close each weight quantization keeps a model to its float32 self: the measurements behind
quant="q4_0"'s choice of which tensors stay Q8_0.

    python tools/quant_quality.py tests/fixtures/gpt2-tiny-hf tests/fixtures/gemma3-tiny
    python tools/quant_quality.py /tmp/gemma3-random --tokens 128 --json out.json

For each model and each variant (q8_0, q4_0-pure, and q4_0 keeping a set of roles at Q8_0:
embed = token embedding / tied lm_head, lm_head = an untied one, attn_out = the attention output
projection), on a fixed prompt followed by f32's own greedy continuation of --tokens tokens:
  - cosine: mean over positions of the cosine between the variant's logits and f32's;
  - top-1: the fraction of those positions where the variant's argmax equals f32's (teacher
    forced: both read the same tokens, so one early difference does not decide the rest);
  - prefix: how many of the variant's own greedy tokens equal f32's before the first difference;
  - the bytes one decode step streams (weights, KV cache reads).
Markdown on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

if importlib.util.find_spec("pyrustml") is None:  # run from a checkout: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyrustml
from pyrustml.io.weights import QuantPlan

VARIANTS: dict[str, QuantPlan] = {
    "q8_0": QuantPlan("q8_0"),
    "q4_0 keep embed+lm_head+attn_out": QuantPlan("q4_0", keep_q8=("embed", "lm_head", "attn_out")),
    "q4_0 keep embed+lm_head": QuantPlan("q4_0", keep_q8=("embed", "lm_head")),
    "q4_0 keep attn_out": QuantPlan("q4_0", keep_q8=("attn_out",)),
    "q4_0-pure": QuantPlan("q4_0-pure"),
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def weight_bytes(model: pyrustml.Model, pos: int) -> int:
    """Bytes one decode step at position pos streams (weights, KV reads, embedding row)."""
    net: Any = model.net
    return int(net.decode_bytes(pos).total)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return np.asarray(np.sum(a64 * b64, axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)))


def measure(directory: str, prompt_len: int, tokens: int, seed: int) -> list[dict[str, Any]]:
    ref_model = pyrustml.load(directory, quant="f32")
    vocab = ref_model.net.vocab_size
    rng = np.random.default_rng(seed)
    prompt = [int(t) for t in rng.integers(3, min(vocab, 50000), size=prompt_len)]
    g = ref_model.generate(prompt, max_tokens=tokens, temperature=0, ignore_eos=True)
    seq = prompt + list(g.tokens)
    ref = ref_model.logits(seq[:-1])[prompt_len - 1 :]
    ref_top = ref.argmax(axis=1)
    ref_bytes = weight_bytes(ref_model, prompt_len)
    del ref_model
    _log(f"{directory}: f32 done ({len(g.tokens)} tokens)")
    rows: list[dict[str, Any]] = [
        {"model": Path(directory).name, "variant": "f32", "cosine": 1.0, "top1": 1.0, "prefix": tokens,
         "weight_mib": ref_bytes / (1 << 20)}
    ]  # fmt: skip
    for name, plan in VARIANTS.items():
        m = pyrustml.load(directory, quant=plan)
        lg = m.logits(seq[:-1])[prompt_len - 1 :]
        own = list(m.generate(prompt, max_tokens=tokens, temperature=0, ignore_eos=True).tokens)
        prefix = next((i for i, (a, b) in enumerate(zip(own, g.tokens, strict=False)) if a != b), len(own))
        rows.append(
            {
                "model": Path(directory).name,
                "variant": name,
                "cosine": float(cosine_rows(lg, ref).mean()),
                "top1": float((lg.argmax(axis=1) == ref_top).mean()),
                "prefix": prefix,
                "weight_mib": weight_bytes(m, prompt_len) / (1 << 20),
            }
        )
        _log(f"  {name}: cosine {rows[-1]['cosine']:.5f}, top-1 {rows[-1]['top1']:.3f}, prefix {prefix}")
        del m
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("models", nargs="+", help="checkpoint directories")
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens (default 16)")
    ap.add_argument("--tokens", type=int, default=128, help="greedy tokens compared (default 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for d in args.models:
        rows += measure(d, args.prompt, args.tokens, args.seed)
    print(
        f"| model | variant | logits cosine vs f32 | top-1 = f32 ({args.tokens} tokens) | greedy prefix "
        "| MiB per decode step |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['variant']} | {r['cosine']:.5f} | {r['top1']:.3f} | {r['prefix']} | "
            f"{r['weight_mib']:.2f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
