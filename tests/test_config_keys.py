"""No silent misreading of config files: every key that changes the computation is read or
refused, floats are checked as the float32 libq8 computes with, wrong JSON types are errors that
name the file and the key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import FIX

import pyrustml
from pyrustml.errors import ModelFormatError, UnsupportedModelError
from pyrustml.models import gemma3, gpt2

MODELS = {"gpt2": ("gpt2-tiny-hf", gpt2), "gemma3": ("gemma3-tiny", gemma3)}


def copy_with(tmp: Path, name: str, file: str = "config.json", **changes: Any) -> Path:
    d = tmp / name
    if not d.exists():
        shutil.copytree(FIX / name, d)
    path = d / file
    data = json.loads(path.read_text()) if path.exists() else {}
    for k, v in changes.items():
        if v is _DELETE:
            data.pop(k, None)
        else:
            data[k] = v
    path.write_text(json.dumps(data))
    return d


_DELETE = object()


def _refusing_values(accepted: tuple[object, ...]) -> list[object]:
    """Values outside the accepted ones: the opposite flag, a number, an object."""
    out: list[object] = [{"rope_type": "linear", "factor": 8.0}, 0.5]
    out += [not v for v in accepted if isinstance(v, bool)]
    return [v for v in out if v not in accepted or isinstance(v, dict)]


@pytest.mark.parametrize(
    ("arch", "key"),
    [(a, k) for a, (_, mod) in MODELS.items() for k in mod.CONFIG_KEYS_REFUSED],
)
def test_each_refused_key_is_refused(tmp_path: Path, arch: str, key: str) -> None:
    name, mod = MODELS[arch]
    for i, value in enumerate(_refusing_values(mod.CONFIG_KEYS_REFUSED[key])):
        d = copy_with(tmp_path / str(i), name, **{key: value})
        with pytest.raises(UnsupportedModelError, match=key):
            pyrustml.load(str(d))


@pytest.mark.parametrize("arch", list(MODELS))
def test_refused_keys_with_accepted_values_load(tmp_path: Path, arch: str) -> None:
    name, mod = MODELS[arch]
    accepted = {k: v[0] for k, v in mod.CONFIG_KEYS_REFUSED.items() if v}
    d = copy_with(tmp_path, name, **accepted)
    assert pyrustml.load(str(d)).generate("Hi", max_tokens=2, temperature=0).tokens


def test_read_and_refused_lists_do_not_overlap() -> None:
    for _, mod in MODELS.values():
        assert not set(mod.CONFIG_KEYS_READ) & set(mod.CONFIG_KEYS_REFUSED)


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "yarn", "factor": 4, "rope_theta": 1e6},
        {"full_attention": {"rope_type": "dynamic", "factor": 8, "rope_theta": 1e6}},
        {"sliding_attention": {"rope_type": "linear", "factor": 8, "rope_theta": 1e4}},  # local: never scaled
        {"sliding_attention": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}},
    ],
)
def test_gemma_rope_scaling_it_does_not_implement_is_refused(tmp_path: Path, rope: dict[str, Any]) -> None:
    d = copy_with(tmp_path, "gemma3-tiny", rope_parameters=rope)
    with pytest.raises(UnsupportedModelError):
        pyrustml.load(str(d))


@pytest.mark.parametrize(
    "rope",
    [
        {"rope_type": "linear", "factor": 8},  # flat: the global layers' setting (the issue's example)
        {"full_attention": {"rope_type": "linear", "factor": 8, "rope_theta": 1e6}},
    ],
)
def test_gemma_linear_scaling_is_honoured_on_global_layers(tmp_path: Path, rope: dict[str, Any]) -> None:
    """Gemma 3 4B+ scale the global layers' positions by 1/8; the local layers never are. The
    scaled run differs from the unscaled one once positions pass the local window."""
    d = copy_with(tmp_path, "gemma3-tiny", rope_parameters=rope)
    m = pyrustml.load(str(d))
    cfg: Any = m.net.cfg  # type: ignore[attr-defined]
    inv = cfg.global_inv_freq
    assert inv is not None
    hd = cfg.head_dim
    base = 1.0 / (1e6 ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    np.testing.assert_allclose(np.asarray(inv, dtype=np.float64), base / 8, rtol=1e-6)
    plain = pyrustml.load(str(FIX / "gemma3-tiny"))
    ids = list(range(3, 40))
    assert not np.array_equal(m.logits(ids)[-1], plain.logits(ids)[-1])


def test_gemma_flat_default_rope_parameters_set_the_global_base(tmp_path: Path) -> None:
    d = copy_with(tmp_path, "gemma3-tiny", rope_parameters={"rope_type": "default", "rope_theta": 5e5})
    m = pyrustml.load(str(d))
    assert m.net.cfg.theta_global == 5e5  # type: ignore[attr-defined]
    assert m.net.cfg.theta_local == 10000.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("gpt2-tiny-hf", "layer_norm_epsilon", 1e300),
        ("gpt2-tiny-hf", "layer_norm_epsilon", 1e-300),
        ("gpt2-tiny-hf", "layer_norm_epsilon", 1e30),
        ("gemma3-tiny", "rms_norm_eps", 1e300),
        ("gemma3-tiny", "rms_norm_eps", 1e-50),
        ("gemma3-tiny", "final_logit_softcapping", 1e-300),
        ("gemma3-tiny", "final_logit_softcapping", 1e300),
        ("gemma3-tiny", "attn_logit_softcapping", 1e-300),
        ("gemma3-tiny", "query_pre_attn_scalar", 1e-300),
        ("gemma3-tiny", "query_pre_attn_scalar", 1e300),
        ("gemma3-tiny", "rope_theta", 1e-300),
        ("gemma3-tiny", "rope_theta", 0.5),
        ("gemma3-tiny", "rope_theta", 1e300),
        ("gemma3-tiny", "rope_local_base_freq", 1e-300),
        ("gemma3-tiny", "rope_theta", "1e6"),
        ("gemma3-tiny", "rms_norm_eps", "1e-6"),
    ],
)
def test_floats_outside_float32_are_refused_by_key(
    tmp_path: Path, name: str, key: str, value: object
) -> None:
    d = copy_with(tmp_path, name, **{key: value})
    with pytest.raises(ModelFormatError, match=key):
        pyrustml.load(str(d))


def test_untied_head_without_lm_head_is_refused(tmp_path: Path) -> None:
    for name in ("gpt2-tiny-hf", "gemma3-tiny"):
        d = copy_with(tmp_path, name, tie_word_embeddings=False)
        with pytest.raises(UnsupportedModelError, match="tie_word_embeddings"):
            pyrustml.load(str(d))


@pytest.mark.parametrize(
    ("file", "key", "value"),
    [
        ("generation_config.json", "temperature", "0.7"),
        ("generation_config.json", "top_k", 1e400),
        ("generation_config.json", "top_k", float("nan")),
        ("generation_config.json", "top_k", 2.5),
        ("generation_config.json", "top_p", 1.5),
        ("generation_config.json", "temperature", -1),
        ("generation_config.json", "temperature", 1e-320),
        ("generation_config.json", "repetition_penalty", 0),
        ("generation_config.json", "do_sample", "false"),
        ("generation_config.json", "min_p", [0.1]),
        ("tokenizer_config.json", "add_bos_token", "false"),
        ("tokenizer_config.json", "add_bos_token", 0),
    ],
)
def test_wrong_json_types_name_the_file_and_key(tmp_path: Path, file: str, key: str, value: object) -> None:
    d = copy_with(tmp_path, "gemma3-tiny", file, **{key: value})
    with pytest.raises(ModelFormatError) as info:
        pyrustml.load(str(d))
    assert file in str(info.value) and key in str(info.value)


def test_generation_defaults_are_used(tmp_path: Path) -> None:
    d = copy_with(
        tmp_path, "gpt2-tiny-hf", "generation_config.json", temperature=0.5, top_k=7, do_sample=True
    )
    m = pyrustml.load(str(d))
    assert m.defaults["temperature"] == 0.5 and m.defaults["top_k"] == 7.0
    d2 = copy_with(tmp_path / "b", "gpt2-tiny-hf", "generation_config.json", temperature=0.5, do_sample=False)
    assert pyrustml.load(str(d2)).defaults["temperature"] == 0.0


def test_add_bos_token_false_is_false(tmp_path: Path) -> None:
    d = copy_with(tmp_path, "gemma3-tiny", "tokenizer_config.json", add_bos_token=False)
    m = pyrustml.load(str(d))
    assert m.add_bos is False
    assert m.encode("Hello")[0] != m.bos_id


@pytest.mark.parametrize("theta", [1e300, 1.0, 0.5, -10000.0, "10000", True])
def test_a_rope_base_float32_cannot_hold_is_refused(theta: object) -> None:
    """Both key styles: 1e300 becomes inf in float32 and every frequency but the first 0."""
    from pyrustml.io.config import Fields
    from pyrustml.models.rope import parse_rope

    for data in ({"rope_theta": theta}, {"rope_parameters": {"rope_type": "default", "rope_theta": theta}}):
        with pytest.raises(ModelFormatError, match="RoPE base"):
            parse_rope(Fields(data, "config.json"), 10000.0)
    assert parse_rope(Fields({"rope_theta": 500000.0}, "config.json"), 10000.0).theta == 500000.0


# ---- tie_word_embeddings against a stored lm_head: one rule for every architecture ------------
# (checkpoint, its embedding's name); llama-attnbias-f32 is made by tests/support/checkpoints.py.
TIED = [
    ("gpt2-tiny-hf", "transformer.wte.weight"),
    ("gemma3-tiny", "model.embed_tokens.weight"),
    ("llama-attnbias-f32", "model.embed_tokens.weight"),
]


def tied_checkpoint(tmp: Path, name: str, head: str) -> Path:
    """A tied checkpoint that also stores lm_head.weight: the embedding itself ("same"), or the
    embedding with one value changed ("other")."""
    from safetensors.numpy import load_file, save_file
    from support import checkpoints as GEN

    d = tmp / f"{name}-{head}"
    if name in GEN.CASES:
        GEN.write_checkpoint(name, d)
    else:
        shutil.copytree(FIX / name, d)
    embed = dict(TIED)[name]
    tensors = load_file(d / "model.safetensors")
    w = tensors[embed].copy()
    if head == "other":
        w[0, 0] += 1.0
    tensors["lm_head.weight"] = w
    save_file(tensors, d / "model.safetensors")
    return d


@pytest.mark.parametrize("name", [n for n, _ in TIED])
def test_a_stored_head_equal_to_the_embedding_is_not_loaded_again(tmp_path: Path, name: str) -> None:
    d = tied_checkpoint(tmp_path, name, "same")
    m = pyrustml.load(str(d))
    try:
        assert m.net.lm_head is m.net.embed.table  # one matrix, as transformers ties them
    finally:
        m.close()


@pytest.mark.parametrize("name", [n for n, _ in TIED])
def test_a_stored_head_that_differs_from_the_tied_embedding_is_refused(tmp_path: Path, name: str) -> None:
    d = tied_checkpoint(tmp_path, name, "other")
    with pytest.raises(UnsupportedModelError, match="differs"):
        pyrustml.load(str(d))
