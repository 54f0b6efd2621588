"""A model's checkpoint tensors declared once, as a table: each entry names its tensor (or the
tensors of a fused group), gives its shape, says what it becomes and, for a Linear, its role in
the QuantPlan (embed, lm_head, attn_out, matrix: the role picks the weight format). The same table
loads the weights and lists every name the model reads, for the check that the checkpoint holds nothing
else, so no tensor name is written twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine.kernels import WeightArena
from .safetensors import Checkpoint
from .weights import QuantPlan, load_fused, load_linear, matrix_f32, vector


@dataclass(frozen=True)
class W:
    """One entry of a weight map. kind is "vector" (n,) or "matrix" (n, k), both float32 arrays;
    "linear": a Linear (n, k) with an optional bias (n,), stored [k, n] when transposed (HF
    Conv1D); "fused": one Linear whose rows are the (rows[i], k) tensors stacked in order, with
    one bias per part when it has biases (Qwen2's q/k/v). role: the QuantPlan role of a Linear or
    fused entry (its weight format)."""

    kind: str
    names: tuple[str, ...]
    n: int
    k: int = 0
    biases: tuple[str, ...] = ()  # none, or one per name
    transposed: bool = False
    rows: tuple[int, ...] = ()
    role: str = "matrix"


def vec(name: str, n: int) -> W:
    return W("vector", (name,), n)


def mat(name: str, n: int, k: int) -> W:
    return W("matrix", (name,), n, k)


def linear(
    name: str, n: int, k: int, bias: str | None = None, transposed: bool = False, role: str = "matrix"
) -> W:
    return W("linear", (name,), n, k, () if bias is None else (bias,), transposed, role=role)


def fused(
    names: list[str], rows: list[int], k: int, role: str = "matrix", biases: list[str] | None = None
) -> W:
    return W("fused", tuple(names), sum(rows), k, tuple(biases or ()), rows=tuple(rows), role=role)


# attribute (or key) -> entry, in load order (the arena lays matrices out in that order)
WeightMap = dict[str, W]


def checkpoint_names(wmap: WeightMap, prefix: str = "") -> set[str]:
    """Every checkpoint name the map reads, biases included."""
    out: set[str] = set()
    for w in wmap.values():
        out |= {prefix + n for n in (*w.names, *w.biases)}
    return out


def load_map(
    wmap: WeightMap, ckpt: Checkpoint, prefix: str, *, plan: QuantPlan, arena: WeightArena | None
) -> dict[str, Any]:
    """Each entry loaded (shape and finiteness checked), by its key; a Linear in the format the
    plan gives its role."""
    out: dict[str, Any] = {}
    for key, w in wmap.items():
        name = prefix + w.names[0]
        if w.kind == "vector":
            out[key] = vector(ckpt, name, w.n)
        elif w.kind == "matrix":
            out[key] = matrix_f32(ckpt, name, (w.n, w.k))
        elif w.kind == "linear":
            bias = prefix + w.biases[0] if w.biases else None
            out[key] = load_linear(
                ckpt, name, bias, w.n, w.k, transposed=w.transposed, fmt=plan.fmt(w.role), arena=arena
            )
        else:
            names = [prefix + n for n in w.names]
            biases = [prefix + b for b in w.biases] if w.biases else None
            out[key] = load_fused(
                ckpt, names, list(w.rows), w.k, fmt=plan.fmt(w.role), arena=arena, biases=biases
            )
    return out


def load_into(
    obj: object, wmap: WeightMap, ckpt: Checkpoint, prefix: str, *, plan: QuantPlan, arena: WeightArena | None
) -> None:
    """load_map, each entry set as the attribute its key names."""
    for key, value in load_map(wmap, ckpt, prefix, plan=plan, arena=arena).items():
        setattr(obj, key, value)
