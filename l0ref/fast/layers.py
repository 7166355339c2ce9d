"""One compiled call per compact layer: its buffers, its input product, its recurrence.

Between two kernels that sweep megabytes, every Python operation runs on cold caches and
costs microseconds: the compact Table 1 LSTM spent 0.44-0.48 ms of a forward outside its
kernels at 1, 4 and 16 threads, a quarter of the 1.8 ms that a fast 16-core host takes for
the whole forward (``docs/wide.md``, version 9).  So the driver hands a layer to one of
these functions, which does in compiled code what it did in Python: allocate ``wx``,
``out`` and ``pre``, write the constant gates' tails (``layout.constant_layout``), compute
the input projection where the threads' split does not (``recurrences.projects``), run
the recurrence (``recurrences.py``) and report whether a barrier gave up.  Measured, it
was no faster than the Python it replaced (16 threads, old and new code in turn: compact
LSTM 0.993, RHN 1.013; two threads: 1.016, 1.019): kept because the driver's layer call
is simpler with it (``driver._run_packed``).

Arguments, per cell, as the recurrence takes them (``recurrences.lstm_sequence`` and
the others), plus: ``tail``, ``tail_wx``, ``tail_pre``: the count of constant rows and
their values in ``wx`` and ``pre`` (empty where there are none); ``row_starts``,
``panel_starts``: the input product's split (``tile.split``), used where the
recurrence does not compute it.  Each returns ``(out, aborted)``: every step's output
(rows of all steps, n) and whether the threads' barrier timed out (``sync.wait``), in
which case ``out`` and the state arrays are garbage and the driver runs the layer again
split by rows, from fresh states.
"""
from __future__ import annotations

import numpy as np

from ._jit import njit
from .recurrences import gru_sequence, lstm_sequence, projects, rhn_sequence
from .sync import ABORT
from .tile import matmul_bias


@njit()
def _buffers(x, W, b_in, B, n, tail, tail_wx, tail_pre, rows, cols, row_starts, panel_starts):
    """``wx`` (rows of x, width), ``out`` (rows of x, n) and ``pre`` (B, width) for a layer
    whose packed W has ``W.shape[0]`` panels: the constants' tails written, and ``wx``
    computed unless the recurrence computes it (:func:`recurrences.projects`)."""
    N = x.shape[0]
    width = W.shape[0] * W.shape[-1] + tail
    wx = np.empty((N, width), x.dtype)
    out = np.empty((N, n), x.dtype)
    pre = np.empty((B, width), x.dtype)
    if tail:
        wx[:, width - tail:] = tail_wx
        pre[:, width - tail:] = tail_pre
    if not projects(rows, cols):
        matmul_bias(x, W, b_in, wx, row_starts, panel_starts)
    return wx, out, pre


@njit()
def lstm_layer(x, W, b_in, U, groups, pos, tail, tail_wx, tail_pre, h, c, sync, rows, cols, row_starts,
               panel_starts, starts):
    """An LSTM layer (Eq. 1) over the packed steps ``starts``: ``(out, aborted)``; h, c
    (B, n) the initial state, c updated in place."""
    wx, out, pre = _buffers(x, W, b_in, h.shape[0], h.shape[1], tail, tail_wx, tail_pre, rows, cols,
                            row_starts, panel_starts)
    lstm_sequence(x, W, b_in, wx, U, groups, h, c, out, pre, sync, rows, cols, pos, starts)
    return out, sync[ABORT] != 0


@njit()
def gru_layer(x, W, b_in, U, b_rec, groups, pos, tail, tail_wx, tail_pre, h, sync, rows, cols, row_starts,
              panel_starts, starts):
    """A GRU layer over the packed steps ``starts``: ``(out, aborted)``; h (B, n) the
    initial state; ``b_rec`` the recurrent bias b_h in the layout."""
    wx, out, pre = _buffers(x, W, b_in, h.shape[0], h.shape[1], tail, tail_wx, tail_pre, rows, cols,
                            row_starts, panel_starts)
    gru_sequence(x, W, b_in, wx, U, b_rec, groups, h, out, pre, sync, rows, cols, pos, starts)
    return out, sync[ABORT] != 0


@njit()
def rhn_layer(x, W, b_in, R, b_rec, groups, pos, tail, tail_wx, tail_pre, s, sync, rows, cols, row_starts,
              panel_starts, starts):
    """An RHN layer over the packed steps ``starts``: ``(out, aborted)``; s (B, n) the
    initial state (not changed); R and ``b_rec`` every micro-step's matrix and bias."""
    wx, out, pre = _buffers(x, W, b_in, s.shape[0], s.shape[1], tail, tail_wx, tail_pre, rows, cols,
                            row_starts, panel_starts)
    buffers = np.empty((2,) + s.shape, s.dtype)
    rhn_sequence(x, W, b_in, wx, R, b_rec, groups, s, out, pre, buffers, sync, rows, cols, pos, tail, starts)
    return out, sync[ABORT] != 0


__all__ = ["lstm_layer", "gru_layer", "rhn_layer"]
