"""Weights as the forward pass uses them: a Linear layer (Q8_0, Q4_0 or float32) whose libq8 pointers
are taken once at load, and the Embedding that reads its rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import KernelArgumentError
from ._ffi import ffi, lib
from .kernels import Q4Matrix, Q8Matrix, check


class Linear:
    """y = W x (+ b) with W of shape (n, k): Q8_0 or Q4_0 when quantized, else float32."""

    n: int
    k: int
    quantized: bool
    q4: bool  # the quantized weights are Q4_0
    q: Q8Matrix | Q4Matrix | None
    wf: np.ndarray | None
    bias: np.ndarray | None
    w_ptr: Any
    b_ptr: Any

    def __init__(
        self, n: int, k: int, q: Q8Matrix | Q4Matrix | None, wf: np.ndarray | None, bias: np.ndarray | None
    ):
        self.n = n
        self.k = k
        self.q = q
        self.wf = wf
        self.bias = bias
        self.quantized = q is not None
        self.q4 = isinstance(q, Q4Matrix)
        if q is not None:
            self.w_ptr = q.ptr()
        elif wf is not None:
            self.w_ptr = ffi.from_buffer("float[]", wf)
        else:
            raise KernelArgumentError("Linear needs Q8_0, Q4_0 or float32 weights")
        self.b_ptr = ffi.NULL if bias is None else ffi.from_buffer("float[]", bias)

    @property
    def nbytes(self) -> int:
        if self.q is not None:
            return self.q.nbytes
        return 0 if self.wf is None else int(self.wf.nbytes)

    def gemm(self, x: Any, t: int, y: Any) -> None:
        """y[t, n] = x[t, k] W^T + b."""
        if self.q4:
            rc = lib.q8_q4_gemm(self.w_ptr, self.n, self.k, x, t, self.b_ptr, y)
        elif self.quantized:
            rc = lib.q8_gemm(self.w_ptr, self.n, self.k, x, t, self.b_ptr, y)
        else:
            rc = lib.q8_gemm_f32(self.w_ptr, self.n, self.k, x, t, self.b_ptr, y)
        check(rc, "gemm")


class Embedding:
    """Token embedding rows, read from the (tied) lm_head weights: dequantized Q8_0/Q4_0 rows when
    quantized (as llama.cpp does), exact float32 rows otherwise."""

    table: Linear
    dim: int

    def __init__(self, table: Linear) -> None:
        self.table = table
        self.dim = table.k
