"""Checkpoint data is read, not memory-mapped: a file that shrinks while it is loaded gives a
ModelFormatError instead of SIGBUS, and chunked reads keep the load's peak RSS within 1.3x of the
loaded model's RSS. The header's tensor count is bounded before the JSON is parsed."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from child import child_env
from support import FIX

import pyrustml
from pyrustml.errors import ModelFormatError
from pyrustml.io.config import Fields
from pyrustml.io.safetensors import MAX_TENSORS, Checkpoint, tensor_budget
from pyrustml.models import gemma3, gpt2
from pyrustml.models.base import LoadOptions

PEAK_OVER_FINAL = 1.3


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...], np.ndarray]]) -> None:
    header: dict[str, object] = {}
    pos = 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + data.nbytes]}
        pos += data.nbytes
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for _, _, data in tensors.values():
            f.write(np.ascontiguousarray(data).tobytes())


def truncate_to_half(path: Path) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


@pytest.mark.parametrize(("name", "mod"), [("gpt2-tiny-hf", gpt2), ("gemma3-tiny", gemma3)])
def test_a_file_truncated_after_its_header_was_read_is_a_format_error(
    tmp_path: Path, name: str, mod: object
) -> None:
    d = tmp_path / name
    shutil.copytree(FIX / name, d)
    f = Fields(json.loads((d / "config.json").read_text()), "config.json")
    ckpt = Checkpoint(str(d))
    try:
        truncate_to_half(d / "model.safetensors")
        with pytest.raises(ModelFormatError, match="truncated or rewritten"):
            mod.build(f, ckpt, LoadOptions("q8_0"))  # type: ignore[attr-defined]
    finally:
        ckpt.close()


RACE = r"""
import os, sys, threading, time
import pyrustml
from pyrustml.errors import PyrustmlError
d, src = sys.argv[1], sys.argv[2]
path = os.path.join(d, "model.safetensors")
data = open(src, "rb").read()
stop = threading.Event()
def flap():
    # Shrink and restore the file in place while the main thread loads it, as a process that
    # rewrites the cache would.
    while not stop.is_set():
        os.truncate(path, len(data) // 3)
        time.sleep(0.0005)
        with open(path, "r+b") as fh:
            fh.write(data)
        time.sleep(0.0005)
threading.Thread(target=flap, daemon=True).start()
ok = failed = 0
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        pyrustml.load(d)
        ok += 1
    except PyrustmlError:
        failed += 1
stop.set()
print(ok, failed)
"""


def test_loading_while_the_file_flaps_never_kills_the_process(tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(FIX / "gemma3-tiny", d)
    r = subprocess.run(
        [sys.executable, "-c", RACE, str(d), str(FIX / "gemma3-tiny" / "model.safetensors"), "3"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    # A negative code is death by a signal: SIGBUS was what mmap gave.
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    ok, failed = map(int, r.stdout.split())
    print(f"[flapping file] {ok} loads succeeded, {failed} refused with a family error")
    assert ok + failed > 0


def test_a_header_declaring_too_many_tensors_is_refused_before_parsing(tmp_path: Path) -> None:
    n = MAX_TENSORS * 4
    entries = ",".join(f'"t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for i in range(n))
    text = ("{" + entries + "}").encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text)
    t0 = time.monotonic()
    with pytest.raises(ModelFormatError, match="declares"):
        Checkpoint(str(tmp_path))
    took = time.monotonic() - t0
    print(f"[tensor bomb] {n} tensors, {len(text) / 1e6:.1f} MB header refused in {took * 1000:.0f} ms")
    assert took < 2.0


# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's (the pytest process's) peak.
PEAK = r"""
import sys
import pyrustml
m = pyrustml.load(sys.argv[1])
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
kib = lambda key: int(status[key].split()[0]) * 1024
print(kib("VmHWM"), kib("VmRSS"))
"""


def test_peak_rss_of_a_load_stays_near_the_final_size(tmp_path: Path) -> None:
    """A Gemma-shaped model whose bf16 embedding (96 MiB) dwarfs the rest: mapped or read whole,
    the embedding alone would push the peak past 1.3x; read in chunks it does not."""
    d = tmp_path / "big-embed"
    shutil.copytree(FIX / "gemma3-tiny", d)
    cfg = json.loads((d / "config.json").read_text())
    vocab, hidden = 49152, 1024
    cfg.update(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=1, head_dim=64,
               num_attention_heads=4, num_key_value_heads=2, intermediate_size=256)  # fmt: skip
    (d / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(0)

    def bf16(*shape: int) -> tuple[str, tuple[int, ...], np.ndarray]:
        w = (rng.standard_normal(shape, dtype=np.float32) * 0.02).view(np.uint32) >> 16
        return ("BF16", shape, w.astype(np.uint16))

    H, KV, hd, FF = 4, 2, 64, 256
    t = {"model.embed_tokens.weight": bf16(vocab, hidden), "model.norm.weight": bf16(hidden)}
    p = "model.layers.0."
    shapes = {
        "self_attn.q_proj.weight": (H * hd, hidden), "self_attn.k_proj.weight": (KV * hd, hidden),
        "self_attn.v_proj.weight": (KV * hd, hidden), "self_attn.o_proj.weight": (hidden, H * hd),
        "self_attn.q_norm.weight": (hd,), "self_attn.k_norm.weight": (hd,),
        "mlp.gate_proj.weight": (FF, hidden), "mlp.up_proj.weight": (FF, hidden),
        "mlp.down_proj.weight": (hidden, FF),
        "input_layernorm.weight": (hidden,), "post_attention_layernorm.weight": (hidden,),
        "pre_feedforward_layernorm.weight": (hidden,), "post_feedforward_layernorm.weight": (hidden,),
    }  # fmt: skip
    t.update({p + k: bf16(*s) for k, s in shapes.items()})
    write_safetensors(d / "model.safetensors", t)
    r = subprocess.run(
        [sys.executable, "-c", PEAK, str(d)], capture_output=True, text=True, env=child_env(), timeout=120
    )
    assert r.returncode == 0, r.stderr[-2000:]
    peak, rss = map(int, r.stdout.split())
    embed_mib = vocab * hidden * 2 / 2**20
    print(f"[peak rss] peak {peak / 2**20:.0f} MiB, after load {rss / 2**20:.0f} MiB "
          f"(x{peak / rss:.2f}); the bf16 embedding is {embed_mib:.0f} MiB")  # fmt: skip
    assert peak <= PEAK_OVER_FINAL * rss


def test_reads_match_the_reference_reader(tmp_path: Path) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "model.safetensors"
    a = np.arange(10 * 7, dtype=np.float32).reshape(10, 7)
    b = np.arange(5, dtype=np.float16)
    write_safetensors(path, {"a": ("F32", a.shape, a), "b": ("F16", b.shape, b)})
    ckpt = Checkpoint(str(tmp_path))
    try:
        ref = safetensors_numpy.load_file(str(path))
        np.testing.assert_array_equal(ckpt.raw("a"), ref["a"])
        np.testing.assert_array_equal(ckpt.rows("a", 3, 8), ref["a"][3:8])
        np.testing.assert_array_equal(ckpt.raw("b"), ref["b"])
    finally:
        ckpt.close()
    assert pyrustml.PyrustmlError is not None


def test_the_tensor_budget_follows_the_layer_count(tmp_path: Path) -> None:
    """gpt2-tiny-hf with 2 layers may declare at most 32 x 2 + 64 tensors: a header with 1000
    extra zero-size tensors is refused by count, before its entries are parsed."""
    d = tmp_path / "m"
    shutil.copytree(FIX / "gpt2-tiny-hf", d)
    raw = (d / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    for i in range(1000):
        header[f"extra.{i}"] = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    text = json.dumps(header).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    with pytest.raises(ModelFormatError, match="declares"):
        pyrustml.load(str(d))
    assert tensor_budget(2) == 32 * 2 + 64 and tensor_budget("2") == MAX_TENSORS
