"""load(quant="q4_0" / "q4_0-pure") end to end: which weights become Q4_0, that they are the
checkpoint's tensors quantized (Conv1D transposes included), that the model runs close to f32,
and the CLI's --quant q4_0."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support import FIX

import pyrustml
from pyrustml import kernels
from pyrustml.engine.linear import Linear
from pyrustml.errors import OptionError
from pyrustml.io.safetensors import Checkpoint
from pyrustml.io.weights import QuantPlan


def linears(model: pyrustml.Model) -> dict[str, Linear]:
    """Every matrix of the model by role name: embed, lm_head (when untied), attn_out, and the
    other matrices as 'matrix.<layer>.<attribute>'."""
    net: Any = model.net
    out: dict[str, Linear] = {}
    if hasattr(net, "wte"):
        out["embed"] = net.wte
        for i, b in enumerate(net.blocks):
            out[f"attn_out.{i}"] = b.proj
            for a in ("attn", "fc", "fc_proj"):
                out[f"matrix.{i}.{a}"] = getattr(b, a)
    else:
        out["embed"] = net.embed_table
        for i, L in enumerate(net.layers):
            out[f"attn_out.{i}"] = L.o
            for a in ("qkv", "gate_up", "down"):
                out[f"matrix.{i}.{a}"] = getattr(L, a)
    if net.lm_head is not out["embed"]:
        out["lm_head"] = net.lm_head
    return out


def fmt(lin: Linear) -> str:
    return "q4_0" if lin.q4 else "q8_0" if lin.quantized else "f32"


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny"])
def test_q4_0_keeps_embedding_and_attention_output_at_q8_0_and_pure_makes_everything_q4_0(name: str) -> None:
    for quant in ("q4_0", "q4_0-pure"):
        m = pyrustml.load(str(FIX / name), quant=quant)
        assert m.quant == quant
        for role, lin in linears(m).items():
            keep = quant == "q4_0" and role.split(".")[0] in ("embed", "lm_head", "attn_out")
            assert fmt(lin) == ("q8_0" if keep else "q4_0"), (quant, role)


def test_a_quant_plan_chooses_per_role() -> None:
    plan = QuantPlan("q4_0", keep_q8=("embed",))
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"), quant=plan)
    for role, lin in linears(m).items():
        assert fmt(lin) == ("q8_0" if role.split(".")[0] == "embed" else "q4_0"), role
    with pytest.raises(OptionError, match="role"):
        QuantPlan("q4_0", keep_q8=("mlp",))
    with pytest.raises(OptionError, match="quant must be one of"):
        pyrustml.load(str(FIX / "gpt2-tiny-hf"), quant="q4_1")


def test_loaded_q4_weights_are_the_checkpoint_quantized() -> None:
    """GPT-2's Conv1D weights are stored [in, out]: the loader quantizes their transpose; a
    fused Gemma QKV is the three tensors stacked. Both byte-equal quantize_q4_0."""
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"), quant="q4_0-pure")
    ck = Checkpoint(str(FIX / "gpt2-tiny-hf"))
    try:
        names = set(ck.names())
        pre = "transformer." if "transformer.h.0.mlp.c_fc.weight" in names else ""
        w = np.ascontiguousarray(ck.float32(pre + "h.0.mlp.c_fc.weight").T)
        emb = np.ascontiguousarray(ck.float32(pre + "wte.weight"))
    finally:
        ck.close()
    net: Any = m.net
    assert isinstance(net.blocks[0].fc.q, kernels.Q4Matrix)
    np.testing.assert_array_equal(net.blocks[0].fc.q.blocks, kernels.quantize_q4_0(w).blocks)
    np.testing.assert_array_equal(net.wte.q.blocks, kernels.quantize_q4_0(emb).blocks)

    g = pyrustml.load(str(FIX / "gemma3-tiny"), quant="q4_0")
    ck = Checkpoint(str(FIX / "gemma3-tiny"))
    try:
        p = "model.layers.1.self_attn."
        qkv = np.concatenate([ck.float32(p + s + "_proj.weight") for s in "qkv"], axis=0)
    finally:
        ck.close()
    gnet: Any = g.net
    np.testing.assert_array_equal(gnet.layers[1].qkv.q.blocks, kernels.quantize_q4_0(qkv).blocks)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


@pytest.mark.parametrize("name", ["gpt2-tiny-hf", "gemma3-tiny"])
def test_q4_models_run_close_to_f32(name: str) -> None:
    """Random tiny checkpoints are the hardest case for 4 bits (no outlier structure to exploit,
    64-wide rows); the logits still point the same way as f32's, less closely than Q8_0's."""
    ids = list(range(3, 40))
    ref = pyrustml.load(str(FIX / name), quant="f32").logits(ids)
    cos = {q: cosine(pyrustml.load(str(FIX / name), quant=q).logits(ids), ref) for q in ("q8_0", "q4_0")}
    assert cos["q8_0"] > 0.99
    assert 0.85 < cos["q4_0"] < cos["q8_0"]
    g = pyrustml.load(str(FIX / name), quant="q4_0").generate(
        ids[:4], max_tokens=12, temperature=0, ignore_eos=True
    )
    assert len(g.tokens) == 12


def test_cli_quant_q4_0(cli: Any) -> None:
    model = str(FIX / "gpt2-tiny-openai")
    r = cli(["-m", model, "-p", "Hello", "-n", "5", "--temp", "0", "--quant", "q4_0"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Hello")
    bad = cli(["-m", model, "-p", "Hello", "--quant", "q3"])
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
