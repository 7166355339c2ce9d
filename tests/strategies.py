"""Hypothesis strategies shared by the suite: shapes first, then arrays of those shapes."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SIZES = st.integers(1, 7)
STEPS = st.integers(1, 6)
BATCH = st.integers(1, 4)


def values(lo: float = -1.0, hi: float = 1.0):
    """Bounded finite float64 elements, no subnormals."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


def arrays(shape, lo: float = -1.0, hi: float = 1.0):
    return hnp.arrays(np.float64, shape, elements=values(lo, hi))


def mask_values():
    """Gate values in [0, 1] with exact zeros and exact ones well represented."""
    return st.one_of(st.sampled_from([0.0, 1.0]), values(0.0, 1.0))


@st.composite
def masks(draw, batch: int, size: int, per_sequence=None):
    """A gate vector of shape (size,) or (batch, size), containing exact 0s and 1s."""
    if per_sequence is None:
        per_sequence = draw(st.booleans())
    shape = (batch, size) if per_sequence else (size,)
    return draw(hnp.arrays(np.float64, shape, elements=mask_values()))


@st.composite
def cell_problem(draw, cell, hidden_size=None, **init_options):
    """A random instance of ``cell``: parameters, input, masks, initial state, loss weights.

    Parameters are drawn in [-1, 1] and the input in [-2, 2].  Returns a dict with
    keys ``params, x, z, s, state0, d_out, d_state`` (state as the cell expects it).
    """
    T, B, m = draw(STEPS), draw(BATCH), draw(SIZES)
    n = draw(SIZES) if hidden_size is None else hidden_size
    seed = draw(st.integers(0, 2**32 - 1))
    shapes = {k: v.shape for k, v in cell.init_params(m, n, np.random.default_rng(seed), **init_options).items()}
    params = {k: draw(arrays(shape)) for k, shape in shapes.items()}
    x = draw(arrays((T, B, m), -2.0, 2.0))
    per_sequence = draw(st.booleans())
    z = draw(masks(B, m, per_sequence))
    s = draw(masks(B, n, per_sequence))
    template = cell.zero_state(B, n, np.float64)
    if isinstance(template, tuple):
        state0 = tuple(draw(arrays(t.shape)) for t in template)
    else:
        state0 = draw(arrays(template.shape))
    rng = np.random.default_rng(seed)
    d_out = rng.normal(size=(T, B, n))
    d_state = (tuple(rng.normal(size=t.shape) for t in template) if isinstance(template, tuple)
               else rng.normal(size=template.shape))
    return dict(params=params, x=x, z=z, s=s, state0=state0, d_out=d_out, d_state=d_state)
