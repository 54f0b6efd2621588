"""Loader and input edges found by the hostile-input review: file-named errors for extra tensors,
a context too large for memory, the element a prompt list trips on, empty logits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from support import FIX

import pyrustml
from pyrustml.errors import ModelFormatError, OutOfMemoryError, PromptTypeError


def test_extra_tensor_error_names_the_file(tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(FIX / "gpt2-tiny-hf", d)
    tensors = load_file(str(d / "model.safetensors"))
    tensors["transformer.h.0.attn.rotary.weight"] = np.zeros(4, dtype=np.float32)
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(
        ModelFormatError, match=r"^model\.safetensors: .*does not use: \['transformer\.h\.0\.attn"
    ):
        pyrustml.load(str(d))


def test_a_context_too_large_for_memory_is_out_of_memory(tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(FIX / "gemma3-tiny", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["max_position_embeddings"] = 2**31 - 1  # global layers keep a full cache: 2 KV heads x 24 x 4 B each
    (d / "config.json").write_text(json.dumps(cfg))
    # The default context is min(the model's, 4096): loading takes what a sequence needs.
    m = pyrustml.load(str(d), parallel=2)
    assert (m.ctx, m.parallel) == (4096, 2)
    # Asked for the whole context, the caches are refused, naming the figure and the buffer.
    with pytest.raises(OutOfMemoryError, match=r"GiB for layer 5's key cache") as err:
        pyrustml.load(str(d), ctx=2**31 - 1)
    assert isinstance(err.value, MemoryError)
    # Likewise a slot count whose caches together exceed the memory.
    with pytest.raises(OutOfMemoryError, match=r"128 x 4000000 positions"):
        pyrustml.load(str(d), ctx=4_000_000, parallel=128)


def test_prompt_type_error_names_the_bad_element() -> None:
    m = pyrustml.load(str(FIX / "gpt2-tiny-hf"))
    with pytest.raises(PromptTypeError, match=r"a list holding bool True"):
        m.generate([5, True], max_tokens=1)
    with pytest.raises(PromptTypeError, match=r"a list holding float 1\.5"):
        m.logits([1.5])
    assert m.logits([]).shape == (0, m.net.vocab_size)
