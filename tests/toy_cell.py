"""A toy cell, registered only by ``tests/test_toy_cell.py``: Elman's RNN with the masks of Eq. 2.

Its one gate block::

    a_t = s * (W (z * x_t) + U (s * h_{t-1})) + b,    h_t = tanh(a_t)

It proves that a cell is one module: with ``cells.register`` and nothing else, the
models, the penalty counts, compaction and the report work with it.
"""
from __future__ import annotations

import numpy as np

from l0ref.cells._masks import (as_dtype, check_grad_output, check_inputs, check_param, check_sizes, check_state,
                                init_scale, project_input, project_input_backward, project_state,
                                project_state_backward, reduce_to_mask, weight_grad)

NAME = "elman"
BLOCKS = 1
BLOCK_NAMES = ("h",)
STATE_KEYS = ("h0",)
PARAM_KEYS = ("W", "U", "b")
OPTIONS = ()
FOLD_AXES = {"W": ("rows", "in"), "U": ("rows", "hid"), "b": ("bias",)}


def param_shapes(input_size, hidden_size):
    m, n = check_sizes(input_size, hidden_size)
    return {"W": (n, m), "U": (n, n), "b": (n,)}


def matrix_blocks():
    return 1, 1


def weight_blocks(params):
    return matrix_blocks()


def init_params(input_size, hidden_size, rng, dtype=np.float64, init_range=None):
    m, n = check_sizes(input_size, hidden_size)
    k = init_scale(n, init_range)
    return {key: rng.uniform(-k, k, shape).astype(dtype) for key, shape in param_shapes(m, n).items()}


def sizes(params):
    W = np.asarray(params["W"])
    return W.shape[1], W.shape[0]


def zero_state(batch, hidden_size, dtype=np.float64):
    return np.zeros((batch, hidden_size), dtype)


def forward(params, x, z=None, s=None, state0=None):
    dtype = as_dtype(params)
    m, n = sizes(params)
    W, U, b = (check_param(params, k, sh) for k, sh in param_shapes(m, n).items())
    x, z, s = check_inputs(x, z, s, m, n, dtype)
    T, B, _ = x.shape
    H = np.empty((T + 1, B, n), dtype)
    H[0] = check_state(state0, B, n, "h0", dtype)
    xz, wx = project_input(W, x, z)
    pre = np.empty((T, B, n), dtype)
    for t in range(T):
        pre[t] = wx[t] + project_state(U, s, H[t])
        H[t + 1] = np.tanh(s * pre[t] + b)
    cache = dict(params=(W, U, b), x=x, xz=xz, z=z, s=s, H=H, pre=pre)
    return H[1:].copy(), H[T].copy(), cache


def backward(d_outputs, d_final_state, cache):
    W, U, b = cache["params"]
    x, xz, z, s, H, pre = (cache[k] for k in ("x", "xz", "z", "s", "H", "pre"))
    T, B, n = pre.shape
    d_outputs = check_grad_output(d_outputs, (T, B, n), "d_outputs", W.dtype)
    dh_next = check_grad_output(d_final_state, (B, n), "dh_T", W.dtype).copy()
    da = np.empty_like(pre)
    ds_cols = np.empty((T, B, n), W.dtype)
    for t in reversed(range(T)):
        da[t] = (d_outputs[t] + dh_next) * (1 - H[t + 1] ** 2)
        dh_next, ds_cols[t] = project_state_backward(da[t] * s, U, s, H[t])
    d_pre = da * s
    dx, dW, dz = project_input_backward(d_pre, W, x, z, xz)
    return {"x": dx, "h0": dh_next, "W": dW, "U": weight_grad(d_pre, s * H[:-1]), "b": da.sum(axis=(0, 1)),
            "z": dz, "s": reduce_to_mask(da * pre + ds_cols, s)}
