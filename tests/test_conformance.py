"""Every architecture against transformers, one table: tiny random checkpoints generated at test time
(tests/support/checkpoints.py, numpy only, seeded) in the hub's layouts, checked against the
references tools/make_conformance_refs.py made with transformers (float32 logits, greedy tokens,
chat-template and BOS tokenization, RoPE tables). What each case covers is in CASES' comments:
Llama 3 llama3 scaling + tied + bf16 + sharded, linear scaling + head_dim + untied + 5.x keys,
Mistral's window, Qwen2 biases + use_sliding_window/max_window_layers, Qwen3 q/k norms, and
Gemma3ForConditionalGeneration (a tiny vision tower, both key layouts) on text-only input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import FIX
from support import checkpoints as GEN
from support.references import assert_f32_close, assert_q8_cosine

import pyrustml
from pyrustml.errors import UnsupportedModelError
from pyrustml.io.config import Fields

REF_BASE = FIX / "conformance-reference"
# transformers takes theta^(2i/d) with Sleef's powf (1 ulp), numpy with glibc's; the reciprocal and
# the llama3 steps round again: the tables may differ by a few ulp, never more.
INV_FREQ_ULPS = 4


REF: dict[str, Any] = json.loads(REF_BASE.with_suffix(".json").read_text())
_NPZ = np.load(REF_BASE.with_suffix(".npz"))
LOGITS = {k: _NPZ[k] for k in _NPZ.files}
NAMES = sorted(REF["cases"])
_DIRS: dict[str, Path] = {}
_MODELS: dict[tuple[str, str], pyrustml.Model] = {}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance")


def checkpoint(root: Path, name: str) -> Path:
    if name not in _DIRS:
        _DIRS[name] = GEN.write_checkpoint(name, root / name)
    return _DIRS[name]


def model(root: Path, name: str, quant: str) -> pyrustml.Model:
    if (name, quant) not in _MODELS:
        _MODELS[(name, quant)] = pyrustml.load(str(checkpoint(root, name)), quant=quant)
    return _MODELS[(name, quant)]


def test_the_cases_cover_the_issue() -> None:
    """The table holds what the references must exercise; a case dropped from it fails here."""
    cases = [GEN.CASES[n] for n in NAMES]
    texts = [GEN.text_config(c) for c in cases]
    assert {c.config["model_type"] for c in cases} == {"llama", "mistral", "qwen2", "qwen3", "gemma3"}
    assert {c.dtype for c in cases} == {"F32", "BF16"}
    kinds = {str((t.get("rope_scaling") or t.get("rope_parameters") or {}).get("rope_type")) for t in texts}
    kinds |= {str((t.get("rope_scaling") or {}).get("type")) for t in texts}
    assert {"llama3", "linear"} <= kinds
    assert any("rope_parameters" in t for t in texts) and any("rope_theta" in t for t in texts)
    assert {bool(t.get("tie_word_embeddings")) for t in texts if t["model_type"] != "gemma3_text"} == {
        True,
        False,
    }
    windows = [t.get("sliding_window") for t in texts if t.get("use_sliding_window", True)]
    assert any(isinstance(w, int) and w < GEN.SEQ_LEN for w in windows)
    assert any(c.shards > 1 for c in cases)
    assert {c.key_layout for c in cases if c.config["model_type"] == "gemma3"} == {"v4", "v5"}
    llama3 = next(t for t in texts if (t.get("rope_scaling") or {}).get("rope_type") == "llama3")
    assert GEN.SEQ_LEN > llama3["rope_scaling"]["original_max_position_embeddings"]


@pytest.mark.parametrize("name", NAMES)
def test_generator_still_makes_the_reference_weights(name: str) -> None:
    assert GEN.weights_digest(name) == REF["cases"][name]["digest"]
    assert GEN.sequences(GEN.CASES[name]) == REF["cases"][name]["sequences"]


@pytest.mark.parametrize("name", NAMES)
def test_rope_tables_match_transformers(name: str) -> None:
    """The inv_freq the model turns pairs by is transformers' (llama3/linear scaling included);
    Gemma 3: linear scaling on the global layers only, the local ones unscaled."""
    from pyrustml.models.gemma3_multimodal import text_fields
    from pyrustml.models.llama import LlamaConfig
    from pyrustml.models.rope import parse_rope

    case = GEN.CASES[name]
    want = REF["cases"][name]["inv_freq"]
    if case.config["model_type"] == "gemma3":
        text = text_fields(Fields(case.config, "config.json"))
        hd = text.int_("head_dim")
        tables = {"global": parse_rope(text, 1e6).inv_freq(hd)}
        local = Fields({"rope_theta": text.float_("rope_local_base_freq", 10000.0)}, "local")
        tables["local"] = parse_rope(local, 10000.0).inv_freq(hd)
    else:
        tables = {
            "global": LlamaConfig(Fields(case.config, "config.json"), case.config["model_type"]).inv_freq
        }
    assert set(tables) == set(want)
    for kind, ours in tables.items():
        theirs = np.array(want[kind], dtype=np.float32)
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        ulps = np.abs(ours.view(np.int32).astype(np.int64) - theirs.view(np.int32))
        assert ulps.max() <= INV_FREQ_ULPS, f"{kind}: {ulps.max()} ulps"


@pytest.mark.parametrize("name", NAMES)
def test_f32_logits_match_transformers(root: Path, name: str) -> None:
    m = model(root, name, "f32")
    ref = REF["cases"][name]
    for i, seq in enumerate(ref["sequences"]):
        got = m.logits(seq)[ref["positions"][i]]
        want = LOGITS[f"{name}/{i}"]
        assert_f32_close(got, want, f"sequence {i}")


@pytest.mark.parametrize("name", NAMES)
def test_f32_greedy_matches_transformers(root: Path, name: str) -> None:
    """Prefill in chunks then decode plans, past every window and original context."""
    m = model(root, name, "f32")
    ref = REF["cases"][name]
    assert set(m.eos_ids) == set(ref["eos_token_id"])
    for seq, want in zip(ref["sequences"], ref["greedy"], strict=True):
        g = m.generate(seq, max_tokens=len(want), temperature=0)
        cut = next((j for j, t in enumerate(want) if t in m.eos_ids), len(want))
        assert g.tokens == want[:cut]


@pytest.mark.parametrize("name", [n for n in NAMES if GEN.CASES[n].tokenizer in ("mistral", "chatml")])
def test_batched_greedy_matches_transformers(root: Path, name: str) -> None:
    """Both reference prompts decoded together (two KV-cache slots, one plan run per step, rings
    included) give each its own greedy tokens."""
    m = model(root, name, "f32")
    ref = REF["cases"][name]
    got = m.generate_batch(list(ref["sequences"]), max_tokens=len(ref["greedy"][0]), temperature=0)
    for g, want in zip(got, ref["greedy"], strict=True):
        cut = next((j for j, t in enumerate(want) if t in m.eos_ids), len(want))
        assert g.tokens == want[:cut]


def test_caches_follow_ctx_not_max_position_embeddings(root: Path) -> None:
    """Llama 3.2's 131072 positions must not size the caches: ctx does (default 4096), and a
    sliding layer's ring stays window + prefill chunk whatever ctx is."""
    from pyrustml.models.base import DEFAULT_CTX

    d = checkpoint(root, "qwen2-window-f32")
    big = json.loads((d / "config.json").read_text())["max_position_embeddings"]
    m = pyrustml.load(str(d), quant="f32", ctx=64, parallel=1)
    caps = [(L.window, L.cap) for L in m.net.layers]  # type: ignore[attr-defined]
    assert m.net.ctx == 64 and big > 64
    assert [c for w, c in caps if w == 0] == [64] * sum(1 for w, _ in caps if w == 0)
    assert any(w for w, _ in caps)  # the checkpoint has sliding layers: the next line checks them
    assert all(c == w + m.net.prefill_chunk for w, c in caps if w)
    assert pyrustml.load(str(d), quant="f32", parallel=1).net.ctx == min(big, DEFAULT_CTX)


@pytest.mark.parametrize("name", NAMES)
def test_q8_cosine(root: Path, name: str) -> None:
    m = model(root, name, "q8_0")
    ref = REF["cases"][name]
    for i, seq in enumerate(ref["sequences"]):
        assert_q8_cosine(m.logits(seq)[ref["positions"][i]], LOGITS[f"{name}/{i}"], f"sequence {i}")


@pytest.mark.parametrize("name", NAMES)
def test_chat_and_text_tokens_match_transformers_with_one_bos(root: Path, name: str) -> None:
    """apply_chat_template's ids and tokenizer(text)'s ids; BOS exactly once where the family
    has one (the post-processor for text, the template for chats), never for Qwen."""
    m = model(root, name, "f32")
    ref = REF["cases"][name]
    chat = m.render_chat(REF["chat"])
    text = m.encode(REF["text"])
    assert chat == ref["chat_ids"]
    assert text == ref["text_ids"]
    style = GEN.TOKENIZERS[GEN.CASES[name].tokenizer]
    if style.bos is None:
        assert m.bos_id is None or (m.bos_id not in chat and m.bos_id not in text)
    else:
        bos = GEN.token_id(style, style.bos)
        assert chat.count(bos) == 1 and chat[0] == bos
        assert text.count(bos) == 1 and text[0] == bos


@pytest.mark.parametrize("name", [n for n in NAMES if GEN.CASES[n].shards > 1][:1])
def test_sharded_checkpoint_loads_from_the_hub_cache_offline(root: Path, tmp_path: Path, name: str) -> None:
    """A repo id resolved through huggingface_hub's cache (refs/main -> snapshot) with
    HF_HUB_OFFLINE=1, sharded with an index; the logits equal the local directory's."""
    snapshot = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hub" / "models--pyrustml-test--conformance"
    GEN.write_checkpoint(name, repo / "snapshots" / snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot)
    out = tmp_path / "logits.npy"
    seq = REF["cases"][name]["sequences"][1]
    code = (
        "import sys, numpy as np, pyrustml; "
        "m = pyrustml.load('pyrustml-test/conformance', quant='f32'); "
        f"np.save(sys.argv[1], m.logits({seq}))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(out), model(root, name, "f32").logits(seq))


BIG_VISION = 1 << 26  # float32 elements of the extra vision tensor: 256 MiB, a hole in its file


def _add_sparse_tensor(path: Path, name: str, n: int) -> None:
    """Append an n-element F32 tensor to a safetensors file without writing its bytes (the file
    gets a hole: zeros that take no disk and no memory until read)."""
    raw = path.read_bytes()
    hlen = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + hlen])
    data = raw[8 + hlen :]
    header[name] = {"dtype": "F32", "shape": [n], "data_offsets": [len(data), len(data) + 4 * n]}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with path.open("wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + data)
        f.truncate(8 + len(h) + len(data) + 4 * n)


def _peak_rss_mib(directory: Path) -> float:
    code = (
        "import sys, pyrustml; pyrustml.load(sys.argv[1], quant='q8_0', ctx=64, parallel=1); "
        "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(directory)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[-1]) / 1024


@pytest.mark.parametrize("name", [n for n in NAMES if GEN.CASES[n].config["model_type"] == "gemma3"])
def test_vision_tower_is_never_read(tmp_path: Path, name: str) -> None:
    """A 256 MiB vision tensor changes neither the result nor the peak memory of a load: its
    bytes are never read (reading them would fault every page in). Both key layouts."""
    plain = GEN.write_checkpoint(name, tmp_path / "plain")
    big = GEN.write_checkpoint(name, tmp_path / "big")
    outer = "model." if GEN.CASES[name].key_layout == "v5" else ""
    tensor = outer + "vision_tower.vision_model.extra_for_the_test"
    index = big / "model.safetensors.index.json"
    shard = "model.safetensors"
    if index.exists():
        doc = json.loads(index.read_text())
        shard = doc["weight_map"][outer + "vision_tower.vision_model.post_layernorm.weight"]
        doc["weight_map"][tensor] = shard
        index.write_text(json.dumps(doc))
    _add_sparse_tensor(big / shard, tensor, BIG_VISION)
    assert (big / shard).stat().st_size > 4 * BIG_VISION
    extra = _peak_rss_mib(big) - _peak_rss_mib(plain)
    assert extra < 64, f"loading with the vision tensor took {extra:.0f} MiB more at its peak"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
        ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "dynamic"),
        ({"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "longrope"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, "yarn"),
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"mlp_bias": True}, "mlp_bias"),
    ],
)
def test_unsupported_variants_are_refused(
    root: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    d = tmp_path / "ckpt"
    GEN.write_checkpoint("llama3-tied-bf16", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(change)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match=message):
        pyrustml.load(str(d), quant="f32")
