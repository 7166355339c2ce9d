"""Recurrent layers whose matrices are sparse: the CSR kernel for weight-level sparsity.

Weight gates (Lobacheva et al.'s "W", Louizos et al.) leave zeros scattered through the
kept matrices, which no dense tile can skip.  Here every matrix of a layer is in CSR
form (``compact.csr``: values, int32 column indices, int64 row pointers; the RHN's
micro-steps stacked as rows), and a product costs one multiply-add per nonzero and
batch row.  The arrays run transposed, one gate row (or unit) per row, the batch along
it, padded to whole SIMD vectors (``simd.py``: the batch of 10 of Table 1 is one
16-lane AVX-512 vector in float32): every nonzero is one vector multiply-add of a
contiguous row.

- :func:`csr_input`: every step's input product, ``wx[t, r] = bias[r] + sum_k data[k]
  xT[indices[k], t]`` over the nonzeros k of row r, rows split among the threads;
- :func:`lstm_sequence`, :func:`gru_sequence`, :func:`rhn_sequence`: a step is the
  recurrent product (threads by gate rows) and the cell's update (threads by units): two
  parallel loops per step (a fork-join each, a few microseconds), the time loop inside.

The gate math is the reference's (``cells/``), through ``vmath``'s sigmoid and tanh.
"""
from __future__ import annotations

import numba
import numpy as np

from . import simd
from ._jit import njit
from .vmath import sigmoid, tanh


def csr(M: np.ndarray):
    """``(data, indices int32, indptr int64)`` of a matrix's nonzero entries, row by row."""
    M = np.asarray(M)
    rows, cols = np.nonzero(M)
    indptr = np.zeros(M.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=M.shape[0]), out=indptr[1:])
    return np.ascontiguousarray(M[rows, cols]), cols.astype(np.int32), indptr


def csr_is_smaller(M: np.ndarray) -> bool:
    """Whether a matrix's CSR form (values, int32 indices, int64 row pointers) takes fewer
    bytes than the dense one: the rule by which compaction stores, and the driver runs, a
    weight-gated matrix sparse."""
    M = np.asarray(M)
    nnz = int(np.count_nonzero(M))
    return bool(M.size) and nnz * (M.itemsize + 4) + (M.shape[0] + 1) * 8 < M.size * M.itemsize


def padded_batch(batch: int, dtype) -> int:
    """The batch rounded up to whole SIMD vectors of ``dtype``."""
    lanes = simd.lanes(dtype)
    return -(-batch // lanes) * lanes


@njit(parallel=True)
def csr_input(xT, data, indices, indptr, bias, wx):
    """``wx[t, r, :] = bias[r] + sum_k data[k] xT[indices[k], t, :]`` for M (R, m) in CSR,
    xT (m, T, Bp) and wx (T, R, Bp), Bp a whole number of vectors.  A row's sums over all
    steps accumulate in one buffer, each nonzero adding its input's contiguous T Bp numbers."""
    T, R, Bp = wx.shape
    N = T * Bp
    lanes = simd.lanes_of(wx)
    for r in numba.prange(R):
        acc = np.empty(N, wx.dtype)
        b = simd.splat(bias[r])
        for i in range(0, N, lanes):
            simd.store(acc, i, b)
        k0, k1 = indptr[r], indptr[r + 1]
        k = k0
        while k + 4 <= k1:                       # four nonzeros per pass over the buffer
            w0, w1, w2, w3 = simd.splat(data[k]), simd.splat(data[k + 1]), simd.splat(data[k + 2]), simd.splat(data[k + 3])
            x0, x1, x2, x3 = indices[k] * N, indices[k + 1] * N, indices[k + 2] * N, indices[k + 3] * N
            for i in range(0, N, lanes):
                a = simd.fma(w0, simd.load(xT, x0 + i), simd.load(acc, i))
                a = simd.fma(w1, simd.load(xT, x1 + i), a)
                a = simd.fma(w2, simd.load(xT, x2 + i), a)
                simd.store(acc, i, simd.fma(w3, simd.load(xT, x3 + i), a))
            k += 4
        for k in range(k, k1):
            w = simd.splat(data[k])
            base = indices[k] * N
            for i in range(0, N, lanes):
                simd.store(acc, i, simd.fma(w, simd.load(xT, base + i), simd.load(acc, i)))
        for t in range(T):
            for v in range(0, Bp, lanes):
                simd.store(wx, (t * R + r) * Bp + v, simd.load(acc, t * Bp + v))


@njit(parallel=True)
def _recurrent(data, indices, indptr, row0, rows, hT, Z, z0, preT):
    """``preT[r] = Z[z0 + r] + (M @ hT)[row0 + r]`` for r < rows (one step's product);
    hT (n, Bp), Z and preT C-contiguous with rows of Bp."""
    Bp = hT.shape[1]
    lanes = simd.lanes_of(hT)
    for r in numba.prange(rows):
        like = simd.get(Z, (z0 + r) * Bp)
        zero, one = simd.splat(simd.as_type_of(0.0, like)), simd.splat(simd.as_type_of(1.0, like))
        k0, k1 = indptr[row0 + r], indptr[row0 + r + 1]
        for v in range(0, Bp, lanes):
            a0 = simd.load(Z, (z0 + r) * Bp + v)          # four chains: the FMA latency, not one
            a1, a2, a3 = zero, zero, zero
            k = k0
            while k + 4 <= k1:
                a0 = simd.fma(simd.splat(data[k]), simd.load(hT, indices[k] * Bp + v), a0)
                a1 = simd.fma(simd.splat(data[k + 1]), simd.load(hT, indices[k + 1] * Bp + v), a1)
                a2 = simd.fma(simd.splat(data[k + 2]), simd.load(hT, indices[k + 2] * Bp + v), a2)
                a3 = simd.fma(simd.splat(data[k + 3]), simd.load(hT, indices[k + 3] * Bp + v), a3)
                k += 4
            for k in range(k, k1):
                a0 = simd.fma(simd.splat(data[k]), simd.load(hT, indices[k] * Bp + v), a0)
            simd.store(preT, r * Bp + v, simd.fma(one, simd.fma(one, a0, a1), simd.fma(one, a2, a3)))


@njit(parallel=True)
def _lstm_step(preT, cT, hT, n):
    """Eq. 1 for every unit (threads by units), transposed arrays: gates i, f, g, o."""
    B = hT.shape[1]
    for j in numba.prange(n):
        for b in range(B):
            cj = sigmoid(preT[n + j, b]) * cT[j, b] + sigmoid(preT[j, b]) * tanh(preT[2 * n + j, b])
            cT[j, b] = cj
            hT[j, b] = sigmoid(preT[3 * n + j, b]) * tanh(cj)


@njit()
def lstm_sequence(wx, data, indices, indptr, hT, cT, outT, preT):
    """The LSTM over a sequence: wx (T, 4n, Bp) = ``W x_t + b``; U in CSR; hT, cT (n, Bp)
    the state, updated in place; outT (T, n, Bp) every h_t; preT (4n, Bp) scratch."""
    T, n = outT.shape[0], outT.shape[1]
    for t in range(T):
        _recurrent(data, indices, indptr, 0, 4 * n, hT, wx[t], 0, preT)
        _lstm_step(preT, cT, hT, n)
        outT[t] = hT


@njit(parallel=True)
def _gru_step(xT, preT, hT, n):
    """PyTorch's GRU for every unit: xT (3n, Bp) = ``W x + b_i``, preT = ``U h + b_h``."""
    B = hT.shape[1]
    for j in numba.prange(n):
        for b in range(B):
            r = sigmoid(xT[j, b] + preT[j, b])
            u = sigmoid(xT[n + j, b] + preT[n + j, b])
            m = tanh(xT[2 * n + j, b] + r * preT[2 * n + j, b])
            hT[j, b] = m + u * (hT[j, b] - m)


def bias_rows(b: np.ndarray, Bp: int) -> np.ndarray:
    """A bias (R,) as (R, Bp): the Z of a product that adds only it."""
    return np.ascontiguousarray(np.repeat(np.asarray(b).reshape(-1, 1), Bp, axis=1))


@njit()
def gru_sequence(wx, data, indices, indptr, bias, hT, outT, preT):
    """The GRU over a sequence: wx (T, 3n, Bp) = ``W x_t + b_i``; U in CSR and ``bias``
    (3n, Bp) its b_h; hT (n, Bp) the state, in place; outT (T, n, Bp); preT (3n, Bp)."""
    T, n = outT.shape[0], outT.shape[1]
    for t in range(T):
        _recurrent(data, indices, indptr, 0, 3 * n, hT, bias, 0, preT)
        _gru_step(wx[t], preT, hT, n)
        outT[t] = hT


@njit(parallel=True)
def _rhn_step(preT, qT, n):
    """One micro-step for every unit: ``q <- q + t (h - q)``, h = tanh(a_H), t = sigmoid(a_T)."""
    B = qT.shape[1]
    for j in numba.prange(n):
        for b in range(B):
            h = tanh(preT[j, b])
            tg = sigmoid(preT[n + j, b])
            qT[j, b] = qT[j, b] + tg * (h - qT[j, b])


@njit()
def rhn_sequence(wx, data, indices, indptr, bias, qT, outT, preT):
    """The RHN over a sequence: wx (T, 2n, Bp) = ``W x_t + b^1``; R in CSR, micro-step s at
    rows ``2n s : 2n (s + 1)``, ``bias`` (2nL, Bp) every micro-step's b; qT (n, Bp) the
    state, in place; outT (T, n, Bp); preT (2n, Bp)."""
    T, n = outT.shape[0], outT.shape[1]
    L = bias.shape[0] // max(2 * n, 1) if n else 0
    for t in range(T):
        for s in range(L):
            if s == 0:
                _recurrent(data, indices, indptr, 0, 2 * n, qT, wx[t], 0, preT)
            else:
                _recurrent(data, indices, indptr, 2 * n * s, 2 * n, qT, bias, 2 * n * s, preT)
            _rhn_step(preT, qT, n)
        outT[t] = qT


__all__ = ["csr", "csr_is_smaller", "padded_batch", "bias_rows", "csr_input", "lstm_sequence", "gru_sequence",
           "rhn_sequence"]
