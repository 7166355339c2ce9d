"""How a layer's gate rows are laid out for the kernels: in unit groups, one per thread.

A cell's weights stack ``G`` gate blocks of ``n`` rows (LSTM i, f, g, o: ``W (4n, m)``).
The kernels read them as panels (``tile.pack_panels``) and compute the preactivations
``pre (B, width)`` of a step in that column order.  When the threads split a step by
columns (``recurrences.py``), each must find *all* the gates of its units among its own
columns, so that it can update its units' state without waiting for another thread.
So the units are cut into ``parts`` groups, and each group's columns are its gate
blocks, one after the other, padded to whole panels::

    group 0: i[u0:u1] f[u0:u1] g[u0:u1] o[u0:u1] (pad) | group 1: i[u1:u2] f[u1:u2] ... | ...

With one group this is the plain layout (``i f g o`` of all n units, padded once).  A
group's unit count is a multiple of ``quantum`` (:func:`quantum`: ``nr / gcd(G, nr)``
units fill whole panels of ``nr`` columns, so that only the last group is padded), and
the quanta are shared out as evenly as they go.

``groups`` (parts, 4) int64, one row per group: first unit, unit count, first column,
panels.  :func:`gate_rows` gives, for each column, the gate row it holds (-1: padding);
:func:`pack_grouped` and :func:`pad_grouped` lay a matrix and a bias out in that order.

**Constant rows** (:func:`constant_layout`).  A gate row whose every weight is zero (a
constant gate of Lobacheva et al.: its preactivation gate folded to 0) has the bias as
its preactivation, at every step.  Such rows get no column: each group's columns hold
its *live* rows only (padded to whole panels), so no product computes them; the
constants sit in a *tail* of columns after all groups' panels, which the driver fills
with their biases.  The update reads every gate through ``pos``: for gate block a of
unit j of group g (logical index ``groups[g, LOGICAL] + a k + j``, k the group's units),
the column that holds it, a live one or one of the tail.
"""
from __future__ import annotations

import math

import numpy as np

from .tile import pack_panels, panel_width

#: Columns of ``groups`` (``LOGICAL``: :func:`constant_layout` only).
FIRST_UNIT, UNITS, FIRST_COLUMN, PANELS, LOGICAL = 0, 1, 2, 3, 4


def quantum(blocks: int, nr: int) -> int:
    """Units whose ``blocks`` gate rows fill whole panels of ``nr`` columns."""
    return nr // math.gcd(blocks, nr)


def unit_groups(n: int, blocks: int, parts: int, dtype) -> np.ndarray:
    """``parts`` groups of the ``n`` units of a layer of ``blocks`` gate blocks (see the
    module docstring); groups may be empty when there are fewer quanta than parts."""
    if parts < 1:
        raise ValueError(f"a layout needs at least one group, got {parts}")
    nr = panel_width(dtype)
    q = quantum(blocks, nr)
    quanta = -(-n // q)
    groups = np.zeros((parts, 4), np.int64)
    column = 0
    for g in range(parts):
        first = min(n, q * (g * quanta // parts))
        last = min(n, q * ((g + 1) * quanta // parts))
        panels = -(-blocks * (last - first) // nr)
        groups[g] = (first, last - first, column, panels)
        column += panels * nr
    return groups


def width(groups: np.ndarray, dtype) -> int:
    """Columns of the preactivations in this layout (all groups, padding included)."""
    return int(groups[:, PANELS].sum()) * panel_width(dtype)


def gate_rows(n: int, blocks: int, groups: np.ndarray, dtype) -> np.ndarray:
    """For each column of the layout, the gate row of the cell's matrices it holds
    (``a n + j`` for gate block a, unit j), or -1 for padding."""
    rows = np.full(width(groups, dtype), -1, np.int64)
    for first, units, column, _ in groups:
        for a in range(blocks):
            rows[column + a * units: column + (a + 1) * units] = a * n + np.arange(first, first + units)
    return rows


def reorder(a: np.ndarray, rows: np.ndarray, axis: int, dtype) -> np.ndarray:
    """``a`` with its gate rows along ``axis`` put in the layout's order, zeros for padding."""
    a = np.asarray(a, dtype)
    taken = np.take(a, np.maximum(rows, 0), axis=axis)
    mask = (rows < 0).reshape((-1,) + (1,) * (a.ndim - axis - 1))
    return np.where(mask, 0, taken).astype(dtype)


def pack_grouped(M: np.ndarray, rows: np.ndarray, dtype) -> np.ndarray:
    """The panels (``tile.pack_panels``) of ``M`` (G n, k) with its rows in the layout's order."""
    return pack_panels(reorder(M, rows, 0, dtype), dtype)


def pad_grouped(b: np.ndarray, rows: np.ndarray, dtype) -> np.ndarray:
    """A bias (..., G n) in the layout's column order, zeros for padding."""
    b = np.asarray(b, dtype)
    return np.ascontiguousarray(reorder(b, rows, b.ndim - 1, dtype))


def constant_layout(n: int, blocks: int, parts: int, dtype, live: np.ndarray):
    """The layout without the constant rows (module docstring): ``(groups (parts, 5),
    rows, pos, constant_rows)``.  ``live`` (blocks n,) bool: the gate rows that a product
    computes; ``groups`` as :func:`unit_groups`'s units, its columns and panels the live
    rows', ``LOGICAL`` the group's first logical index; ``rows`` the gate row of every
    column (-1: padding), for :func:`pack_grouped` and :func:`pad_grouped`; ``pos``
    (blocks n,) the column of every logical gate, or ``-1 - i`` for constant row i;
    ``constant_rows`` the gate rows of the constants, in that order."""
    live = np.asarray(live, bool)
    if live.shape != (blocks * n,):
        raise ValueError(f"live has shape {live.shape}, expected ({blocks * n},)")
    nr = panel_width(dtype)
    groups = np.zeros((parts, 5), np.int64)
    rows, constant_rows = [], []
    pos = np.empty(blocks * n, np.int64)
    column = logical = 0
    for g, (first, units, _, _) in enumerate(unit_groups(n, blocks, parts, dtype)):
        here = []
        for a in range(blocks):
            for j in range(units):
                r = a * n + first + j
                if live[r]:
                    pos[logical + a * units + j] = column + len(here)
                    here.append(r)
                else:
                    pos[logical + a * units + j] = -1 - len(constant_rows)     # placed in the tail below
                    constant_rows.append(r)
        panels = -(-len(here) // nr)
        groups[g] = (first, units, column, panels, logical)
        rows += here + [-1] * (panels * nr - len(here))
        column += panels * nr
        logical += blocks * units
    pos[pos < 0] = column - 1 - pos[pos < 0]                          # -1 - i -> column + i
    return groups, np.array(rows, np.int64), pos, np.array(constant_rows, np.int64)


__all__ = ["quantum", "unit_groups", "width", "gate_rows", "reorder", "pack_grouped", "pad_grouped",
           "constant_layout", "FIRST_UNIT", "UNITS", "FIRST_COLUMN", "PANELS", "LOGICAL"]
