"""The recurrences of the compact cells, one kernel per cell, in place over a whole sequence.

The sequences of a batch are independent, so each thread takes a chunk of rows and runs
the whole time loop for them (one fork-join per layer, none per step), a tile of its rows
at a time (``tile.recurrent_product``), followed by the gate nonlinearities and the
state update fused over the row (vectorized by LLVM with ``vmath``'s exp).  The input
projections of all steps are computed before (``tile.matmul_bias``) and read here.
"""
from __future__ import annotations

import numba
import numpy as np

from ._jit import njit
from .tile import MAX_ROWS, NO_OFFSET, Strided, recurrent_product
from .vmath import sigmoid, tanh


@njit()
def _lstm_update(a, c, h, out, n):
    """Eq. 1 for one sequence: gates from the preactivations ``a`` (i, f, g, o blocks
    of n), ``c <- f c + i g``, ``h <- o tanh(c)``, h also into ``out``; vectorized."""
    for j in range(n):
        cj = sigmoid(a[n + j]) * c[j] + sigmoid(a[j]) * tanh(a[2 * n + j])
        hj = sigmoid(a[3 * n + j]) * tanh(cj)
        c[j] = cj
        h[j] = hj
        out[j] = hj


@njit(parallel=True)
def lstm_sequence(wx, U, h, c, out, pre, starts):
    """The LSTM (Eq. 1) over a whole sequence, in place.

    wx (T, B, width): ``x_t W^T + b`` of every step (``tile.matmul_bias``), ``width``
    = 4n rounded up to whole panels; U (4n, n) packed; h, c (B, n): the initial state
    on entry, the final state on exit; out (T, B, n): every h_t; pre (B, width):
    scratch; ``starts``: the row chunks, one per thread.  Gate order i, f, g, o.
    """
    T, B, width = wx.shape
    n = h.shape[1]
    for ci in numba.prange(starts.shape[0] - 1):
        packed = np.empty(n * MAX_ROWS, h.dtype)
        for t in range(T):
            for b in range(starts[ci], starts[ci + 1], MAX_ROWS):
                rows = min(MAX_ROWS, starts[ci + 1] - b)
                recurrent_product(h, b, rows, U, Strided(wx.reshape(-1), (t * B + b) * width, width), pre, packed)
                for r in range(b, b + rows):
                    _lstm_update(pre[r], c[r], h[r], out[t, r], n)


@njit()
def _gru_update(x, a, h, out, n):
    """PyTorch's GRU for one sequence: ``x`` = W x_t + b_i, ``a`` = U h + b_h (r, u, n
    blocks); ``h <- m + u (h - m)`` with ``m = tanh(x_n + r a_n)``; h also into out."""
    for j in range(n):
        r = sigmoid(x[j] + a[j])
        u = sigmoid(x[n + j] + a[n + j])
        m = tanh(x[2 * n + j] + r * a[2 * n + j])
        hj = m + u * (h[j] - m)
        h[j] = hj
        out[j] = hj


@njit(parallel=True)
def gru_sequence(wx, U, b_h, h, out, pre, starts):
    """PyTorch's GRU over a whole sequence, in place.

    wx (T, B, width): ``x_t W^T + b_i``; U (3n, n) packed; b_h (width,) zero-padded;
    h (B, n): the initial state on entry, the final one on exit; out (T, B, n); pre
    (B, width): scratch; ``starts`` as in :func:`lstm_sequence`.  Gate order r, u, n::

        r = sigmoid(wx_r + U_r h + b_hr),  u = sigmoid(wx_u + U_u h + b_hu)
        m = tanh(wx_n + r * (U_n h + b_hn)),  h <- (1 - u) * m + u * h
    """
    T = wx.shape[0]
    n = h.shape[1]
    for ci in numba.prange(starts.shape[0] - 1):
        packed = np.empty(n * MAX_ROWS, h.dtype)
        for t in range(T):
            for b in range(starts[ci], starts[ci + 1], MAX_ROWS):
                rows = min(MAX_ROWS, starts[ci + 1] - b)
                recurrent_product(h, b, rows, U, Strided(b_h, NO_OFFSET, NO_OFFSET), pre, packed)
                for r in range(b, b + rows):
                    _gru_update(wx[t, r], pre[r], h[r], out[t, r], n)


@njit()
def _rhn_update(a, q, n):
    """One RHN micro-step for one sequence: ``q <- q + t (h - q)`` with h = tanh(a_H),
    t = sigmoid(a_T) (the coupled carry gate 1 - t)."""
    for j in range(n):
        hj = tanh(a[j])
        tj = sigmoid(a[n + j])
        q[j] += tj * (hj - q[j])


@njit(parallel=True)
def rhn_sequence(wx, R, rb, q, out, pre, starts):
    """The RHN (Zilly et al.) over a whole sequence, in place.

    wx (T, B, width): ``x_t W^T + b^1`` (the first micro-step's input and bias);
    R (L, 2n, n) packed per micro-step; rb (L, width): the micro-steps' biases,
    zero-padded (row 0 is already in wx); q (B, n): the initial state on entry, the
    final one on exit; out (T, B, n): q after the last micro-step of every t;
    pre (B, width): scratch; ``starts`` as in :func:`lstm_sequence`.
    """
    T, B, width = wx.shape
    L, n = R.shape[0], q.shape[1]
    for ci in numba.prange(starts.shape[0] - 1):
        packed = np.empty(n * MAX_ROWS, q.dtype)
        for t in range(T):
            for b in range(starts[ci], starts[ci + 1], MAX_ROWS):
                rows = min(MAX_ROWS, starts[ci + 1] - b)
                for k in range(L):
                    if k == 0:
                        recurrent_product(q, b, rows, R[0], Strided(wx.reshape(-1), (t * B + b) * width, width), pre,
                                          packed)
                    else:
                        recurrent_product(q, b, rows, R[k], Strided(rb.reshape(-1), k * width, NO_OFFSET), pre, packed)
                    for r in range(b, b + rows):
                        _rhn_update(pre[r], q[r], n)
                for r in range(b, b + rows):
                    out[t, r] = q[r]


__all__ = ["lstm_sequence", "gru_sequence", "rhn_sequence"]
