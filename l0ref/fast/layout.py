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
"""
from __future__ import annotations

import math

import numpy as np

from .tile import pack_panels, panel_width

#: Columns of ``groups``.
FIRST_UNIT, UNITS, FIRST_COLUMN, PANELS = 0, 1, 2, 3


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


__all__ = ["quantum", "unit_groups", "width", "gate_rows", "reorder", "pack_grouped", "pad_grouped",
           "FIRST_UNIT", "UNITS", "FIRST_COLUMN", "PANELS"]
