"""The cell registry: everything outside this folder asks a cell module, by name, for what it knows.

**Adding a cell means adding one module** here (``lstm.py`` is the reference) and one
line, ``register(mymodule)``, at the bottom of this file; :func:`register` checks that the
module offers the whole interface.  Nothing else changes: the models, the penalty,
compaction, the report and the benchmarks read every fact below off the module (the
numba kernels in ``fast/`` run the cells they have a kernel for and refuse the others
by name).  ``tests/test_cells.py`` registers a toy cell to prove it.

The interface:

- ``NAME``; ``BLOCKS``, the gate blocks G of W, and ``BLOCK_NAMES``, one name each;
  ``STATE_KEYS`` (the initial-state gradients of backward), ``PARAM_KEYS``;
  ``OPTIONS``: the names of the cell's options beyond ``init_range`` (the RHN's
  ``depth`` and ``transform_bias``);
- ``FOLD_AXES``: for every parameter, the kind of each of its axes, for compaction
  (``compact.py`` explains the kinds ``"rows"``, ``"bias"``, ``"in"``, ``"hid"``, None);
- ``param_shapes(input_size, hidden_size, **options)`` -> ``{key: shape}``;
- ``matrix_blocks(**options)`` -> ``(G_W, G_U)``: how many (n, m) blocks W has and how
  many (n, n) blocks the recurrent weights have (for counting weights and multiply-adds);
- ``init_params(input_size, hidden_size, rng, dtype, init_range=None, **options)``;
- ``sizes(params)`` -> ``(input_size, hidden_size)``;
- ``zero_state(batch, hidden_size, dtype)`` -> the state in the cell's own form: a tuple
  ``(h0, c0)`` for the LSTM, a single (batch, n) array for the GRU (h0) and the RHN (q0);
- ``forward(params, x, z, s, state0)`` -> ``(outputs (T, B, n), final_state, cache)``;
- ``backward(d_outputs, d_final_state, cache)`` -> dict of gradients keyed by
  ``x``, the ``STATE_KEYS``, the ``PARAM_KEYS``, ``z`` and ``s``;
- ``weight_blocks(params)``: ``matrix_blocks`` of a parameter dict.
"""
from __future__ import annotations

from types import ModuleType

import numpy as np

from . import gru, lstm, rhn

CELLS: dict[str, ModuleType] = {}

#: What :func:`register` requires of a cell module.
CONSTANTS = ("NAME", "BLOCKS", "BLOCK_NAMES", "STATE_KEYS", "PARAM_KEYS", "OPTIONS", "FOLD_AXES")
FUNCTIONS = ("param_shapes", "matrix_blocks", "init_params", "sizes", "zero_state", "forward", "backward",
             "weight_blocks")
AXIS_KINDS = ("rows", "bias", "in", "hid", None)


def register(cell: ModuleType) -> ModuleType:
    """Add a cell module to the registry under its ``NAME``, after checking its interface."""
    missing = [k for k in CONSTANTS if not hasattr(cell, k)] + \
              [k for k in FUNCTIONS if not callable(getattr(cell, k, None))]
    if missing:
        raise ValueError(f"cell module {getattr(cell, '__name__', cell)!r} lacks {missing}")
    if len(cell.BLOCK_NAMES) != cell.BLOCKS:
        raise ValueError(f"cell {cell.NAME!r} has {cell.BLOCKS} blocks but {len(cell.BLOCK_NAMES)} block names")
    if set(cell.FOLD_AXES) != set(cell.PARAM_KEYS):
        raise ValueError(f"cell {cell.NAME!r}: FOLD_AXES covers {sorted(cell.FOLD_AXES)}, "
                         f"the parameters are {sorted(cell.PARAM_KEYS)}")
    for key, axes in cell.FOLD_AXES.items():
        if any(kind not in AXIS_KINDS for kind in axes):
            raise ValueError(f"cell {cell.NAME!r}: FOLD_AXES[{key!r}] = {axes}; axis kinds are {AXIS_KINDS}")
    CELLS[cell.NAME] = cell
    return cell


def get_cell(name: str) -> ModuleType:
    """The cell module registered under ``name`` ("lstm", "gru", "rhn")."""
    try:
        return CELLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cell {name!r}; known cells: {sorted(CELLS)}") from None


def check_options(cell: ModuleType, options: dict) -> dict:
    """``options`` if every key is one of the cell's ``OPTIONS``, else a ``ValueError``."""
    unknown = sorted(set(options) - set(cell.OPTIONS))
    if unknown:
        known = ", ".join(cell.OPTIONS) or "none"
        raise ValueError(f"cell {cell.NAME!r} has no option {', '.join(map(repr, unknown))} (its options: {known})")
    return dict(options)


def layer_macs(cell: ModuleType, input_size: int, hidden_size: int, options: dict) -> tuple[int, int]:
    """Multiply-adds per token of one layer: ``(input product, recurrent product)``, every
    gate block counted (every RHN micro-step): ``(G_W n m, G_U n n)``.  The one
    multiply-add counter of the package (compaction's report and the benchmarks use it)."""
    gw, gu = cell.matrix_blocks(**options)
    m, n = int(input_size), int(hidden_size)
    return gw * n * m, gu * n * n


def layer_param_count(cell: ModuleType, input_size: int, hidden_size: int, options: dict) -> int:
    """Weights and biases of one layer."""
    return sum(int(np.prod(shape)) for shape in cell.param_shapes(input_size, hidden_size, **options).values())


def check_layer(cell: ModuleType, params, input_size: int, hidden_size: int, options: dict, name: str) -> None:
    """``ValueError`` unless ``params`` holds exactly the cell's arrays, of the shapes that
    sizes (m, n) and the options give, each finite.  The one shape check of a layer."""
    want = cell.param_shapes(input_size, hidden_size, **options)
    if not isinstance(params, dict) or set(params) != set(want):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{name} has arrays {got}, a {cell.NAME} layer has {sorted(want)}")
    for key, shape in want.items():
        a = params[key]
        if np.shape(a) != tuple(shape):
            raise ValueError(f"parameter {name}.{key} has shape {np.shape(a)}, expected {tuple(shape)}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"parameter {name}.{key} contains NaN or inf")


for _cell in (lstm, gru, rhn):
    register(_cell)


__all__ = ["CELLS", "register", "get_cell", "check_options", "layer_macs", "layer_param_count", "check_layer"]
