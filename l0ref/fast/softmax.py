"""The output layer: the softmax product and the log-softmax of its rows in one parallel pass."""
from __future__ import annotations

import numba
import numpy as np

from . import simd
from ._jit import njit
from .tile import matmul_bias, matmul_rows
from .vmath import exp


#: Elements of a row whose max and sum of exponentials are taken together, while they
#: are in L1 (4 KB of float32): one pass over the row from memory instead of two.
CHUNK = 1024


@njit()
def _max_of(x, a, b):
    """max of ``x[a:b]`` (b > a): four vectors of running maxima (independent chains),
    combined at the end, then the elements after the last four whole vectors."""
    w = simd.lanes_of(x)
    top = x[a]
    j = a
    if b - a >= 4 * w:
        m0, m1, m2, m3 = simd.load(x, a), simd.load(x, a + w), simd.load(x, a + 2 * w), simd.load(x, a + 3 * w)
        for j in range(a + 4 * w, b - 4 * w + 1, 4 * w):
            m0 = simd.maximum(m0, simd.load(x, j))
            m1 = simd.maximum(m1, simd.load(x, j + w))
            m2 = simd.maximum(m2, simd.load(x, j + 2 * w))
            m3 = simd.maximum(m3, simd.load(x, j + 3 * w))
        m0 = simd.maximum(simd.maximum(m0, m1), simd.maximum(m2, m3))
        for i in range(w):
            top = max(top, simd.lane(m0, i))
        j = a + (b - a) // (4 * w) * 4 * w
    for i in range(j, b):
        top = max(top, x[i])
    return top


@njit()
def _sum_exp(x, a, b, top):
    """sum(exp(x[a:b] - top)): :func:`vmath.exp` a whole vector at a time (the CPU's full
    width), into two vectors of partial sums, then the elements after the last whole
    vector."""
    w = simd.lanes_of(x)
    t = simd.splat(top)
    s0 = t - t
    s1 = s0
    j = a
    for j in range(a, b - 2 * w + 1, 2 * w):
        s0 = s0 + exp(simd.load(x, j) - t)
        s1 = s1 + exp(simd.load(x, j + w) - t)
    j = a + (b - a) // (2 * w) * 2 * w
    if b - j >= w:
        s0 = s0 + exp(simd.load(x, j) - t)
        j += w
    s0 = s0 + s1
    total = top - top
    for i in range(w):
        total += simd.lane(s0, i)
    for i in range(j, b):
        total += exp(x[i] - top)
    return total


@njit()
def log_softmax_row(x):
    """x <- log_softmax(x) for a non-empty 1-D C-contiguous array, in place:
    ``x - (max + log(sum(exp(x - max))))``.  The max and the sum are taken chunk by chunk
    (:data:`CHUNK`), each chunk's sum relative to its own max and the running sum
    rescaled to the larger max as the chunks come (the online softmax's rule, once a
    chunk), so the row is read once from memory for both; then the subtraction."""
    n = x.shape[0]
    top = _max_of(x, 0, min(CHUNK, n))
    total = _sum_exp(x, 0, min(CHUNK, n), top)
    for a in range(CHUNK, n, CHUNK):
        b = min(a + CHUNK, n)
        m = _max_of(x, a, b)
        s = _sum_exp(x, a, b, m)
        if m > top:
            total = total * exp(top - m) + s
            top = m
        else:
            total += s * exp(m - top)
    shift = top + np.log(total)
    for j in range(n):
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
