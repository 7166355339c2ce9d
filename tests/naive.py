"""Slow, obvious twins of the fast code (after stumpy's ``tests/naive.py``).

Each function here is written from the paper's equations, step by step, with no
masks and no batching tricks, so that the fast forms can be checked against it:

- ``masked_*_params``: the explicit masked matrices of Eq. 2, ``W * outer(tile(s, G), z)``
  and ``U * outer(tile(s, G), s)``, for one sequence's gate vectors;
- ``*_plain``: the cell run on one sequence (T, m) with plain matrices.
"""
from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def masked_lstm_params(params: dict, z: np.ndarray, s: np.ndarray) -> dict:
    """Eq. 2 for one sequence: every one of the 4 gate blocks masked alike."""
    S = np.tile(s, 4)
    return {"W": params["W"] * np.outer(S, z), "U": params["U"] * np.outer(S, s), "b": params["b"].copy()}


def lstm_plain(params: dict, x: np.ndarray, h0: np.ndarray, c0: np.ndarray):
    """Eq. 1 on one sequence x (T, m); returns (hs (T, n), h_T, c_T)."""
    W, U, b = params["W"], params["U"], params["b"]
    n = U.shape[1]
    h, c, hs = h0.copy(), c0.copy(), []
    for x_t in x:
        a = W @ x_t + U @ h + b
        i, f, g, o = sigmoid(a[:n]), sigmoid(a[n:2 * n]), np.tanh(a[2 * n:3 * n]), sigmoid(a[3 * n:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.array(hs).reshape(len(x), n), h, c
