"""The recurrences of the compact cells, in place over a whole sequence.

A step is the recurrent product ``pre = Z + h_{t-1} U^T`` (``tile.recurrent_product``)
followed by the gate nonlinearities and the state update, fused over a group's units
(vectorized by LLVM with ``vmath``'s exp).  The input projections of all steps,
``wx = x W^T + b``, are computed before the time loop: by the driver
(``tile.matmul_bias``) when the threads split by rows, here when they split by columns
(:func:`_project`).

The threads share the work of a sequence in a grid: chunks of the batch's rows
(``rows``, boundaries) times ``cols`` parts of the output columns.  The gate columns
are laid out in unit groups (``layout.py``; ``groups`` (G, 4): each group's first unit,
unit count, first column, panels), and a column part is a range of groups, so that
a thread holds every gate of its units and updates their state itself.

- **By rows** (``cols`` = 1): the sequences of a batch are independent, so each thread
  runs the whole time loop for its rows, every column, and never waits for another
  (one fork-join per layer).  Good while each thread has rows to fill a tile; at 16
  threads a batch of 10 would leave 6 idle and give the others one-row products that
  read the whole recurrent matrix at every step.
- **By columns** (one row chunk, ``cols`` threads): every thread takes all the rows and
  its part of the columns, whose part of the recurrent matrix stays in its core's
  cache over all steps.  A step needs the whole previous state, so the threads meet at
  a barrier (``sync.wait``: 1.3 us on 16 cores, where a fork-join costs 6-12 us) after
  every step (RHN: every micro-step).  The previous state is read by every thread, so
  it is kept twice: in ``out`` (rows) and, for the products, already interleaved as
  ``tile.pack_rows`` lays it out (:func:`_shared_states`): each thread writes its units
  there as it updates them, and no thread packs the whole state at every step.
  Before the time loop, each thread computes its own columns of ``wx`` for every step
  (:func:`_project`): its panels of W stay in its cache, the columns it will read are
  in its cache too, and the input product needs no ``prange`` (fork-join) of its own.

**Constant rows** (``layout.constant_layout``): where some gate rows have no weights
(constant gates), the columns hold only the live rows and the products compute only
those; the constants' values sit in the last ``tail`` columns of ``wx``, ``pre`` and the
biases, put there by the driver.  Before a group's update, its gates are gathered
through ``pos`` into the plain order (:func:`_expand`), and the plain update runs.  An
empty ``pos`` means the plain layout.

**Packed steps** (PyTorch's ``PackedSequence`` layout): ``wx`` and ``out`` hold the rows
of all steps one after the other, step t in rows ``starts[t] <= i < starts[t + 1]``, and
step t computes the first ``starts[t + 1] - starts[t]`` sequences of the batch, a count
that never grows (documents sorted by length, longest first; a language model's windows:
``starts = B * arange(T + 1)``).  A sequence that has ended is not computed again: its
state (the LSTM's c) stays at its last step's.  The states of consecutive steps are
different rows: step t - 1's (the initial state at t = 0) are read while step t's are
written.  ``sync`` (``sync.new_sync(parties)``): the barrier's slots and abort flag; a
wait that times out aborts the loop, and the driver runs the layer again by rows
(computing ``wx`` first if the kernel was to: :func:`projects`).
``driver.recurrence_split`` chooses the grid.
"""
from __future__ import annotations

import numba
import numpy as np

from ._jit import njit
from .layout import FIRST_COLUMN, FIRST_UNIT, LOGICAL, PANELS, UNITS
from .sync import ABORT, atomic_load, size, wait
from .tile import MAX_ROWS, NO_OFFSET, Strided, matmul_packed, pack_rows, recurrent_product
from .vmath import sigmoid, tanh


# ------------------------------------------------------------------ updates


@njit()
def _lstm_update(a, c, out, k):
    """Eq. 1 for the k units of one group of one sequence: gates from the
    preactivations ``a`` (i, f, g, o blocks of k), ``c <- f c + i g``, ``out <- o tanh(c)``."""
    for j in range(k):
        cj = sigmoid(a[k + j]) * c[j] + sigmoid(a[j]) * tanh(a[2 * k + j])
        c[j] = cj
        out[j] = sigmoid(a[3 * k + j]) * tanh(cj)


@njit()
def _gru_update(x, a, h, out, k):
    """PyTorch's GRU for the k units of one group of one sequence: ``x`` = W x_t + b_i,
    ``a`` = U h + b_h (r, u, n blocks of k); ``out <- m + u (h - m)``, m = tanh(x_n + r a_n)."""
    for j in range(k):
        r = sigmoid(x[j] + a[j])
        u = sigmoid(x[k + j] + a[k + j])
        m = tanh(x[2 * k + j] + r * a[2 * k + j])
        out[j] = m + u * (h[j] - m)


@njit()
def _rhn_update(a, q, out, k):
    """One RHN micro-step for the k units of one group of one sequence:
    ``out <- q + t (h - q)`` with h = tanh(a_H), t = sigmoid(a_T) (carry gate 1 - t)."""
    for j in range(k):
        hj = tanh(a[j])
        tj = sigmoid(a[k + j])
        out[j] = q[j] + tj * (hj - q[j])


@njit()
def _expand(row, pos, base, count, out):
    """``out[i] = row[pos[base + i]]`` for i < count: a group's gates in the plain order.

    Sliced first and indexed unsigned (``pos`` holds column numbers, never negative): a
    signed index makes numba wrap negative ones around, and that branch kept LLVM from
    turning the loop into vector gathers (3x slower: 141 against 44 ns for a row of 184
    gates on the 2-core Xeon)."""
    p, o = pos[base:base + count], out[:count]
    for i in range(count):
        o[i] = row[np.uint64(p[i])]


@njit()
def _my_part(party, rows, cols, groups):
    """What thread ``party`` takes of a split into row chunks ``rows`` (boundaries) times
    ``cols`` column parts: its rows ``b0 <= b < b1``, its groups ``g0 <= g < g1``, the
    first of their columns and their panels (consecutive groups, consecutive panels)."""
    ri, ci = party // cols, party % cols
    G = groups.shape[0]
    g0, g1 = ci * G // cols, (ci + 1) * G // cols
    count = 0
    for g in range(g0, g1):
        count += groups[g, PANELS]
    c0 = groups[g0, FIRST_COLUMN] if g1 > g0 else 0
    return rows[ri], rows[ri + 1], g0, g1, c0, count


@njit()
def _meet(sync, epoch, parties, party, cols):
    """The barrier after a step, where the threads split the columns (``cols`` > 1):
    split by rows only, a thread reads only states it wrote itself."""
    return cols == 1 or wait(sync, epoch, parties, party)


@njit()
def _check_sync(sync, parties, cols):
    """A column split needs a barrier of its parties (``sync.new_sync(parties)``): the
    waits index its slots without bounds checks."""
    if cols > 1 and sync.shape[0] < size(parties):
        raise ValueError("the barrier array is too small for the parties of this split")


@njit()
def _shared_states(h, shared):
    """The previous state for the products of a column split (``shared``): two buffers
    (2, whole blocks x ``MAX_ROWS`` x n) in :func:`tile.pack_rows`'s interleaved layout,
    the first holding h.  A step's product reads one, its updates write their units of
    the new state into the other (:func:`_publish`), and the next step swaps them: so
    no thread packs the whole state anew at every step, from the caches of the cores
    that wrote it (``docs/wide.md``, version 6).  Empty when not shared."""
    B, n = h.shape
    states = np.zeros((2, -(-B // MAX_ROWS) * MAX_ROWS * n if shared else 0), h.dtype)
    if shared:
        pack_rows(h, 0, B, states[0])
    return states


@njit()
def _product_input(prev, b, nb, shared, packed, epoch):
    """The rows b <= r < b + nb of the previous state, interleaved for the product in
    ``packed[epoch % 2]``: already there when ``shared`` (:func:`_shared_states`),
    packed from ``prev`` otherwise (the thread's own rows, by rows)."""
    if not shared:
        pack_rows(prev, b, b + nb, packed[epoch % 2])


@njit()
def _publish(states, row, r, u0, k):
    """Units u0 <= j < u0 + k of row r of the new state (``row``, (n,)) into ``states``
    (one buffer of :func:`_shared_states`) at their interleaved places."""
    n = row.shape[0]
    base = (r // MAX_ROWS) * MAX_ROWS * n + r % MAX_ROWS
    for j in range(u0, u0 + k):
        states[base + MAX_ROWS * j] = row[j]


@njit()
def projects(rows, cols):
    """Whether a split of ``rows`` (boundaries) x ``cols`` computes the input projection
    ``wx`` itself (:func:`_project`) and keeps the state shared (:func:`_shared_states`):
    by columns, one row chunk.  Otherwise the caller computes ``wx`` before."""
    return cols > 1 and rows.shape[0] == 2


@njit()
def _packed_inputs(x, shared):
    """The buffer for :func:`_project`: every row of x (N, m) in whole blocks of
    ``MAX_ROWS``, interleaved as :func:`tile.pack_rows` lays them out; empty when not
    ``shared``."""
    N, m = x.shape
    return np.empty(-(-N // MAX_ROWS) * MAX_ROWS * m if shared else 0, x.dtype)


@njit()
def _project(x, W, b_in, wx, xp, sync, parties, party, p0, count):
    """A column split's input projection, before the time loop: ``wx[:, c] = x W^T + b_in``
    in the columns of this party's ``count`` panels from ``p0``, for all N rows of x (N, m)
    (every step's; W packed (panels, m, nr) in the layout of ``groups``, b_in padded to
    it).  The parties first pack x into ``xp`` (:func:`_packed_inputs`), each a share of
    its row blocks, and meet at barrier 1; then each multiplies all of it by its own
    panels (``tile.matmul_packed``).  Returns False if the barrier aborted."""
    N, m = x.shape
    blocks = -(-N // MAX_ROWS)
    j0, j1 = party * blocks // parties, (party + 1) * blocks // parties
    if j1 > j0:
        pack_rows(x, j0 * MAX_ROWS, min(N, j1 * MAX_ROWS), xp[j0 * MAX_ROWS * m:])
    if not wait(sync, 1, parties, party):
        return False
    if count > 0:
        matmul_packed(xp, W, b_in, wx, 0, N, p0, p0 + count)
    return True


@njit()
def _unit(groups, g):
    """First unit, unit count and first column of group g."""
    return groups[g, FIRST_UNIT], groups[g, UNITS], groups[g, FIRST_COLUMN]


# ------------------------------------------------------------------ LSTM


@njit(parallel=True)
def lstm_sequence(x, W, b_in, wx, U, groups, h, c, out, pre, sync, rows, cols, pos, starts):
    """The LSTM (Eq. 1) over a whole sequence, in place (module docstring).

    x (rows of all steps, m): the inputs; W, b_in: the input projection packed and padded
    in the layout of ``groups``; wx (rows of all steps, width): ``x_t W^T + b`` of every
    step, in that layout, given where the split does not compute it (:func:`projects`;
    its tail, the constants, always given); U packed in that layout; h, c (B, n): the
    initial state (c is updated in place); out (rows of all steps, n): every h_t; pre (B, width): scratch, its tail the
    constants; ``pos``: the constant rows' layout; ``starts`` (T + 1,): the packed steps
    (module docstring).  Gate order i, f, g, o.
    """
    mapped = pos.shape[0] > 0
    T, width = starts.shape[0] - 1, wx.shape[1]
    n, nr = h.shape[1], U.shape[-1]
    parties = (rows.shape[0] - 1) * cols
    _check_sync(sync, parties, cols)
    shared = projects(rows, cols)
    states, xp = _shared_states(h, shared), _packed_inputs(x, shared)
    for party in numba.prange(parties):
        b0, b1, g0, g1, c0, count = _my_part(party, rows, cols, groups)
        packed = states if shared else np.empty((2, n * MAX_ROWS), h.dtype)
        gates = np.empty(4 * n, h.dtype)
        steps = T
        if shared and not _project(x, W, b_in, wx, xp, sync, parties, party, c0 // nr, count):
            steps = 0
        for t in range(steps):
            s0, e1 = starts[t], min(b1, starts[t + 1] - starts[t])
            prev = h if t == 0 else out[starts[t - 1]:s0]
            cur = out[s0:starts[t + 1]]
            for b in range(b0, e1, MAX_ROWS):
                nb = min(MAX_ROWS, e1 - b)
                if count > 0:
                    _product_input(prev, b, nb, shared, packed, t)
                    recurrent_product(packed[t % 2], b * n if shared else 0, b, nb, U, c0 // nr, count,
                                      Strided(wx.reshape(-1), (s0 + b) * width + c0, width), pre, c0)
                for g in range(g0, g1):
                    u0, k, cg = _unit(groups, g)
                    for r in range(b, b + nb):
                        if mapped:
                            _expand(pre[r], pos, groups[g, LOGICAL], 4 * k, gates)
                            _lstm_update(gates, c[r, u0:u0 + k], cur[r, u0:u0 + k], k)
                        else:
                            _lstm_update(pre[r, cg:cg + 4 * k], c[r, u0:u0 + k], cur[r, u0:u0 + k], k)
                        if shared:
                            _publish(packed[(t + 1) % 2], cur[r], r, u0, k)
            if not _meet(sync, t + 2, parties, party, cols):     # barrier 1: _project's
                break


# ------------------------------------------------------------------ GRU


@njit(parallel=True)
def gru_sequence(x, W, b_in, wx, U, b_h, groups, h, out, pre, sync, rows, cols, pos, starts):
    """PyTorch's GRU over a whole sequence, in place.

    x, W, b_in, wx: the inputs and ``x_t W^T + b_i``, as in :func:`lstm_sequence`; U packed
    and b_h (width,) in the layout of ``groups``; h (B, n): the initial state; out (rows
    of all steps, n); pre (B, width): scratch; ``starts``: the packed steps (module docstring).
    Gate order r, u, n::

        r = sigmoid(wx_r + U_r h + b_hr),  u = sigmoid(wx_u + U_u h + b_hu)
        m = tanh(wx_n + r * (U_n h + b_hn)),  h <- (1 - u) * m + u * h

    ``pos``: the constant rows' layout (module docstring; the tails of wx and b_h hold
    their b_i and b_h).
    """
    mapped = pos.shape[0] > 0
    T = starts.shape[0] - 1
    n, nr = h.shape[1], U.shape[-1]
    parties = (rows.shape[0] - 1) * cols
    _check_sync(sync, parties, cols)
    shared = projects(rows, cols)
    states, xp = _shared_states(h, shared), _packed_inputs(x, shared)
    for party in numba.prange(parties):
        b0, b1, g0, g1, c0, count = _my_part(party, rows, cols, groups)
        packed = states if shared else np.empty((2, n * MAX_ROWS), h.dtype)
        xg, ag = np.empty(3 * n, h.dtype), np.empty(3 * n, h.dtype)
        steps = T
        if shared and not _project(x, W, b_in, wx, xp, sync, parties, party, c0 // nr, count):
            steps = 0
        for t in range(steps):
            s0, e1 = starts[t], min(b1, starts[t + 1] - starts[t])
            prev = h if t == 0 else out[starts[t - 1]:s0]
            cur = out[s0:starts[t + 1]]
            for b in range(b0, e1, MAX_ROWS):
                nb = min(MAX_ROWS, e1 - b)
                if count > 0:
                    _product_input(prev, b, nb, shared, packed, t)
                    recurrent_product(packed[t % 2], b * n if shared else 0, b, nb, U, c0 // nr, count,
                                      Strided(b_h, c0, NO_OFFSET), pre, c0)
                for g in range(g0, g1):
                    u0, k, cg = _unit(groups, g)
                    for r in range(b, b + nb):
                        if mapped:
                            _expand(wx[s0 + r], pos, groups[g, LOGICAL], 3 * k, xg)
                            _expand(pre[r], pos, groups[g, LOGICAL], 3 * k, ag)
                            _gru_update(xg, ag, prev[r, u0:u0 + k], cur[r, u0:u0 + k], k)
                        else:
                            _gru_update(wx[s0 + r, cg:cg + 3 * k], pre[r, cg:cg + 3 * k], prev[r, u0:u0 + k],
                                        cur[r, u0:u0 + k], k)
                        if shared:
                            _publish(packed[(t + 1) % 2], cur[r], r, u0, k)
            if not _meet(sync, t + 2, parties, party, cols):     # barrier 1: _project's
                break


# ------------------------------------------------------------------ RHN


@njit(parallel=True)
def rhn_sequence(x, W, b_in, wx, R, rb, groups, q, out, pre, buffers, sync, rows, cols, pos, tail, starts):
    """The RHN (Zilly et al.) over a whole sequence, in place.

    x, W, b_in, wx: the inputs and ``x_t W^T + b^1`` (the first micro-step's input and
    bias), as in :func:`lstm_sequence`;
    R (L, panels, n, nr): every micro-step's matrix packed in the layout of ``groups``;
    rb (L, width): the micro-steps' biases in it (row 0 is already in wx); q (B, n):
    the initial state (not changed); out (rows of all steps, n): the state after the last
    micro-step of every t (``starts``: the packed steps, module docstring); pre (B, width):
    scratch; ``buffers`` (2, B, n): the states between micro-steps, alternately
    (micro-step s of a step reads the state of s - 1 and writes the other buffer; the
    last writes step t's rows of ``out``).  A barrier per micro-step.
    ``pos``, ``tail``: the constant rows' layout (module docstring) and their count; a
    row is constant only where it has no weights at any micro-step, and its value
    changes with the micro-step: the tail of ``pre`` is copied from the micro-step's
    (wx's or rb's) before the update.
    """
    mapped = pos.shape[0] > 0
    T, width = starts.shape[0] - 1, wx.shape[1]
    L, n, nr = R.shape[0], q.shape[1], R.shape[-1]
    parties = (rows.shape[0] - 1) * cols
    _check_sync(sync, parties, cols)
    shared = projects(rows, cols)
    states, xp = _shared_states(q, shared), _packed_inputs(x, shared)
    for party in numba.prange(parties):
        b0, b1, g0, g1, c0, count = _my_part(party, rows, cols, groups)
        packed = states if shared else np.empty((2, n * MAX_ROWS), q.dtype)
        gates = np.empty(2 * n, q.dtype)
        epoch = 0                                         # micro-steps done: the state buffer's parity
        steps = T
        if shared and not _project(x, W, b_in, wx, xp, sync, parties, party, c0 // nr, count):
            steps = 0
        for t in range(steps):
            s0, e1 = starts[t], min(b1, starts[t + 1] - starts[t])
            for s in range(L):
                if s == 0:
                    src = q if t == 0 else out[starts[t - 1]:s0]
                else:
                    src = buffers[(s - 1) % 2]
                dst = out[s0:starts[t + 1]] if s == L - 1 else buffers[s % 2]
                for b in range(b0, e1, MAX_ROWS):
                    nb = min(MAX_ROWS, e1 - b)
                    if count > 0:
                        if s == 0:
                            Z = Strided(wx.reshape(-1), (s0 + b) * width + c0, width)
                        else:
                            Z = Strided(rb.reshape(-1), s * width + c0, NO_OFFSET)
                        _product_input(src, b, nb, shared, packed, epoch)
                        recurrent_product(packed[epoch % 2], b * n if shared else 0, b, nb, R[s], c0 // nr, count,
                                          Z, pre, c0)
                    for g in range(g0, g1):
                        u0, k, cg = _unit(groups, g)
                        for r in range(b, b + nb):
                            if mapped:
                                for i in range(width - tail, width):       # this micro-step's constants
                                    pre[r, i] = wx[s0 + r, i] if s == 0 else rb[s, i]
                                _expand(pre[r], pos, groups[g, LOGICAL], 2 * k, gates)
                                _rhn_update(gates, src[r, u0:u0 + k], dst[r, u0:u0 + k], k)
                            else:
                                _rhn_update(pre[r, cg:cg + 2 * k], src[r, u0:u0 + k], dst[r, u0:u0 + k], k)
                            if shared:
                                _publish(packed[(epoch + 1) % 2], dst[r], r, u0, k)
                epoch += 1
                if not _meet(sync, epoch + 1, parties, party, cols):     # barrier 1: _project's
                    break
            if atomic_load(sync, ABORT) != 0:
                break


__all__ = ["lstm_sequence", "gru_sequence", "rhn_sequence", "projects"]
