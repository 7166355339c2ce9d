"""The output layer: the softmax product and the log-softmax of its rows in one parallel pass."""
from __future__ import annotations

import numba
import numpy as np

from . import simd
from ._jit import njit
from .tile import matmul_bias, matmul_rows
from .vmath import exp


@njit()
def _row_max(x):
    """max of a non-empty 1-D array: four vectors of running maxima (independent
    chains), combined at the end, then the elements after the last whole vector."""
    n, w = x.shape[0], simd.lanes_of(x)
    top = x[0]
    if n >= 4 * w:
        m0, m1, m2, m3 = simd.load(x, 0), simd.load(x, w), simd.load(x, 2 * w), simd.load(x, 3 * w)
        for j in range(4 * w, n - 4 * w + 1, 4 * w):
            m0 = simd.maximum(m0, simd.load(x, j))
            m1 = simd.maximum(m1, simd.load(x, j + w))
            m2 = simd.maximum(m2, simd.load(x, j + 2 * w))
            m3 = simd.maximum(m3, simd.load(x, j + 3 * w))
        m0 = simd.maximum(simd.maximum(m0, m1), simd.maximum(m2, m3))
        for i in range(w):
            top = max(top, simd.lane(m0, i))
    for j in range(n - n % (4 * w), n):
        top = max(top, x[j])
    return top


@njit()
def _sum_exp(x, top):
    """sum(exp(x - top)) of a 1-D array (vectorized; reassociated into several partial sums)."""
    total = x[0] - x[0]
    for j in range(x.shape[0]):
        total += exp(x[j] - top)
    return total


@njit()
def log_softmax_row(x):
    """x <- log_softmax(x) for a non-empty 1-D array, in place: ``x - (max + log(sum(exp(x - max))))``."""
    top = _row_max(x)
    shift = top + np.log(_sum_exp(x, top))
    for j in range(x.shape[0]):
        x[j] -= shift


@njit(parallel=True)
def output_log_probs(h, P, bias, logp, row_starts, panel_starts):
    """logp (N, V) = log_softmax(h @ out_W^T + out_b) for h (N, n): ``P`` is out_W
    packed, ``bias`` zero-padded; ``row_starts``, ``panel_starts``: the blocks of
    ``tile.split``, one per thread.  Split by rows only, each thread takes its rows:
    their product, then their log-softmax, row by row.  Split by columns as well, the
    product of every block first, then the log-softmax of every row (a second parallel
    pass).

    (Tried and slower: the online softmax, which folds each pass of panels into a
    running max and sum while its columns are still in L2: the three passes over a row
    are bound by the exp, not by memory, and short slices cost calls.  Split by columns:
    each block's max and sum of exponentials kept while the block is in cache, combined
    by the online softmax's rule, then subtracted block by block: 0.77 ms against this
    second pass's 0.39 at 16 threads, 1.71 against 0.6-0.8 ms at 2; ``docs/wide.md``.)"""
    if panel_starts.shape[0] == 2:
        for i in numba.prange(row_starts.shape[0] - 1):
            matmul_rows(h, P, bias, logp, row_starts[i], row_starts[i + 1], panel_starts[0], panel_starts[1])
            for r in range(row_starts[i], row_starts[i + 1]):
                log_softmax_row(logp[r])
        return
    matmul_bias(h, P, bias, logp, row_starts, panel_starts)
    for r in numba.prange(logp.shape[0]):
        log_softmax_row(logp[r])


__all__ = ["output_log_probs", "log_softmax_row"]
