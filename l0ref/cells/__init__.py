"""The cell registry: model code picks a cell by name and knows nothing else about it.

Every cell module offers the same interface (see ``lstm.py`` for the reference):

- ``NAME``, ``BLOCKS`` (gate blocks G of W), ``STATE_KEYS``, ``PARAM_KEYS``;
- ``init_params(input_size, hidden_size, rng, dtype, **options)`` -> dict of arrays
  (options: ``init_range`` for all; ``depth`` and ``transform_bias`` for the RHN);
- ``sizes(params)`` -> ``(input_size, hidden_size)``;
- ``zero_state(batch, hidden_size, dtype)`` -> the state in the cell's own form: a tuple
  ``(h0, c0)`` for the LSTM, a single (batch, n) array for the GRU (h0) and the RHN (q0);
- ``forward(params, x, z, s, state0)`` -> ``(outputs (T, B, n), final_state, cache)``;
- ``backward(d_outputs, d_final_state, cache)`` -> dict of gradients keyed by
  ``x``, the ``STATE_KEYS``, the ``PARAM_KEYS``, ``z`` and ``s``;
- ``weight_blocks(params)`` -> ``(G_W, G_U)``: how many (n, m) blocks W has and how
  many (n, n) blocks the recurrent weights have, for counting weights.
"""
from __future__ import annotations

from types import ModuleType

from . import gru, lstm, rhn

CELLS: dict[str, ModuleType] = {"lstm": lstm, "gru": gru, "rhn": rhn}


def get_cell(name: str) -> ModuleType:
    """The cell module registered under ``name`` ("lstm", "gru", "rhn")."""
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; known cells: {sorted(CELLS)}") from None


__all__ = ["CELLS", "get_cell"]
