"""Recurrent layers whose matrices are sparse: the CSR kernel for weight-level sparsity.

Weight gates (Lobacheva et al.'s "W", Louizos et al.) leave zeros scattered through the
kept matrices, which no dense tile can skip.  Here every matrix of a layer is in CSR
form (``compact.csr``: values, int32 column indices, int64 row pointers; the RHN's
micro-steps stacked as rows), and a product costs one multiply-add per nonzero and
batch row.  The arrays run transposed, one gate row (or unit) per row, the batch along
it: the batch of 10 of Table 1 is the inner loop, contiguous for every nonzero read.

- :func:`csr_product`: ``outT[r, :] = bias[r] + sum_k data[k] X[:, indices[k]]`` over the
  nonzeros k of row r, for every row, rows split among the threads;
- :func:`lstm_sequence`, :func:`gru_sequence`, :func:`rhn_sequence`: a step is the
  recurrent product (threads by gate rows) and the cell's update (threads by units): two
  parallel loops per step (a fork-join each, a few microseconds), the time loop inside.

The gate math is the reference's (``cells/``), through ``vmath``'s sigmoid and tanh.
"""
from __future__ import annotations

import numba
import numpy as np

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


@njit(parallel=True)
def csr_product(XT, data, indices, indptr, bias, outT):
    """``outT (R, N) = bias[:, None] + M @ XT`` for M (R, k) in CSR and XT (k, N)."""
    R, N = outT.shape
    for r in numba.prange(R):
        acc = outT[r]
        for i in range(N):
            acc[i] = bias[r]
        for k in range(indptr[r], indptr[r + 1]):
            w = data[k]
            x = XT[indices[k]]
            for i in range(N):
                acc[i] += w * x[i]


@njit(parallel=True)
def _recurrent(data, indices, indptr, row0, rows, hT, ZT, z0, preT):
    """``preT[r] = ZT[z0 + r] + (M @ hT)[row0 + r]`` for r < rows (one step's product)."""
    B = hT.shape[1]
    for r in numba.prange(rows):
        acc = preT[r]
        z = ZT[z0 + r]
        for i in range(B):
            acc[i] = z[i]
        for k in range(indptr[row0 + r], indptr[row0 + r + 1]):
            w = data[k]
            h = hT[indices[k]]
            for i in range(B):
                acc[i] += w * h[i]


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
def lstm_sequence(wxT, data, indices, indptr, hT, cT, outT, preT):
    """The LSTM over a sequence: wxT (4n, T B) = ``W x_t + b``; U in CSR; hT, cT (n, B)
    the state, updated in place; outT (T, n, B) every h_t; preT (4n, B) scratch."""
    T, n = outT.shape[0], outT.shape[1]
    B = hT.shape[1]
    for t in range(T):
        _recurrent(data, indices, indptr, 0, 4 * n, hT, wxT[:, t * B:(t + 1) * B], 0, preT)
        _lstm_step(preT, cT, hT, n)
        outT[t] = hT


@njit(parallel=True)
def _gru_step(xT, preT, hT, n):
    """PyTorch's GRU for every unit: xT (3n, B) = ``W x + b_i``, preT = ``U h + b_h``."""
    B = hT.shape[1]
    for j in numba.prange(n):
        for b in range(B):
            r = sigmoid(xT[j, b] + preT[j, b])
            u = sigmoid(xT[n + j, b] + preT[n + j, b])
            m = tanh(xT[2 * n + j, b] + r * preT[2 * n + j, b])
            hT[j, b] = m + u * (hT[j, b] - m)


@njit()
def gru_sequence(wxT, data, indices, indptr, b_h, hT, outT, preT):
    """The GRU over a sequence: wxT (3n, T B) = ``W x_t + b_i``; U in CSR and b_h (3n,);
    hT (n, B) the state, in place; outT (T, n, B); preT (3n, B) scratch."""
    T, n = outT.shape[0], outT.shape[1]
    B = hT.shape[1]
    bias = np.empty((3 * n, B), hT.dtype)
    for r in range(3 * n):
        bias[r] = b_h[r]
    for t in range(T):
        _recurrent(data, indices, indptr, 0, 3 * n, hT, bias, 0, preT)
        _gru_step(wxT[:, t * B:(t + 1) * B], preT, hT, n)
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
def rhn_sequence(wxT, data, indices, indptr, b, qT, outT, preT):
    """The RHN over a sequence: wxT (2n, T B) = ``W x_t + b^1``; R in CSR, micro-step s
    at rows ``2n s : 2n (s + 1)``; b (L, 2n); qT (n, B) the state, in place; outT (T, n, B)."""
    T, n = outT.shape[0], outT.shape[1]
    B, L = qT.shape[1], b.shape[0]
    bias = np.empty((L * 2 * n, B), qT.dtype)
    for r in range(L * 2 * n):
        bias[r] = b[r // (2 * n), r % (2 * n)]
    for t in range(T):
        for s in range(L):
            if s == 0:
                _recurrent(data, indices, indptr, 0, 2 * n, qT, wxT[:, t * B:(t + 1) * B], 0, preT)
            else:
                _recurrent(data, indices, indptr, 2 * n * s, 2 * n, qT, bias, 2 * n * s, preT)
            _rhn_step(preT, qT, n)
        outT[t] = qT


__all__ = ["csr", "csr_is_smaller", "csr_product", "lstm_sequence", "gru_sequence", "rhn_sequence"]
