"""The output layer: the softmax product and the log-softmax of its rows in one parallel pass."""
from __future__ import annotations

import numba
import numpy as np

from . import simd
from ._jit import njit
from .tile import matmul_rows
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


@njit()
def _block_partials(logp, r0, r1, c0, c1, j, top, total):
    """For the rows r0 <= r < r1 and the columns c0 <= c < c1 (a block of the product,
    still in this thread's cache): ``top[j, r]`` = their max, ``total[j, r]`` = the sum
    of ``exp(x - top)``.  (Indexed block first: the threads of one row range write
    rows of their own, not neighbouring numbers of one cache line.)"""
    for r in range(r0, r1):
        x = logp[r, c0:c1]
        m = _row_max(x)
        top[j, r] = m
        total[j, r] = _sum_exp(x, m)


@njit()
def _block_subtract(logp, r0, r1, c0, c1, top, total):
    """``logp[r, c0:c1] -= max + log(sum exp(x - max))`` of the whole row r, from the
    blocks' partial maxima and sums: ``M = max_j top[j, r]``, ``sum_j total[j, r]
    exp(top[j, r] - M)``."""
    for r in range(r0, r1):
        m = top[0, r]
        for j in range(1, top.shape[0]):
            m = max(m, top[j, r])
        acc = total[0, r] - total[0, r]
        for j in range(top.shape[0]):
            acc += total[j, r] * np.exp(top[j, r] - m)
        shift = m + np.log(acc)
        for c in range(c0, c1):
            logp[r, c] -= shift


@njit(parallel=True)
def output_log_probs(h, P, bias, logp, row_starts, panel_starts):
    """logp (N, V) = log_softmax(h @ out_W^T + out_b) for h (N, n): ``P`` is out_W
    packed, ``bias`` zero-padded; ``row_starts``, ``panel_starts``: the blocks of
    ``tile.split``, one per thread.  Split by rows only, each thread takes its rows:
    their product, then their log-softmax, row by row.  Split by columns as well, each
    thread computes its block of the product and, while it is in its cache, the
    block's max and sum of exponentials per row; then, in a second pass over the same
    blocks (the same thread each), subtracts the row's ``max + log(sum)`` combined from
    the blocks' (the online softmax's combination rule).

    (Tried and slower, split by rows: the online softmax, which folds each pass of
    panels into a running max and sum while its columns are still in L2: the three
    passes over a row are bound by the exp, not by memory, and short slices cost calls.)"""
    if panel_starts.shape[0] == 2:
        for i in numba.prange(row_starts.shape[0] - 1):
            matmul_rows(h, P, bias, logp, row_starts[i], row_starts[i + 1], panel_starts[0], panel_starts[1])
            for r in range(row_starts[i], row_starts[i + 1]):
                log_softmax_row(logp[r])
        return
    N, V = logp.shape
    nr, nc = P.shape[-1], panel_starts.shape[0] - 1
    top = np.empty((nc, N), logp.dtype)
    total = np.empty((nc, N), logp.dtype)
    for task in numba.prange((row_starts.shape[0] - 1) * nc):
        i, j = task // nc, task % nc
        r0, r1, q0, q1 = row_starts[i], row_starts[i + 1], panel_starts[j], panel_starts[j + 1]
        matmul_rows(h, P, bias, logp, r0, r1, q0, q1)
        _block_partials(logp, r0, r1, q0 * nr, min(q1 * nr, V), j, top, total)
    for task in numba.prange((row_starts.shape[0] - 1) * nc):
        i, j = task // nc, task % nc
        r0, r1, q0, q1 = row_starts[i], row_starts[i + 1], panel_starts[j], panel_starts[j + 1]
        _block_subtract(logp, r0, r1, q0 * nr, min(q1 * nr, V), top, total)


__all__ = ["output_log_probs", "log_softmax_row"]
