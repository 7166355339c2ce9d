"""Slow, obvious twins of the fast code (after stumpy's ``tests/naive.py``).

Each function here is written from the paper's equations, step by step, with no
masks and no batching tricks, so that the fast forms can be checked against it:

- ``masked_*_params``: the explicit masked matrices of Eq. 2, ``W * outer(tile(s, G), z)``
  and ``U * outer(tile(s, G), s)``, for one sequence's gate vectors;
- ``*_plain``: the cell run on one sequence (T, m) with plain matrices;
- ``TWINS`` and ``masked_cell_plain``: the two for any registered cell by name, over a
  batch, with the state in the cell's own form (for the generic checks of test_cells.py).

The masked-params functions also take Lobacheva et al.'s gates: ``g``, the preactivation
gates of one sequence, which scale the rows like ``tile(s, G)``, and ``wm``, the weight
gates, which multiply the matrices entry by entry.  The GRU's candidate gate multiplies
``r * (U_n h + b_hn)`` too, so its twin carries ``g_n`` apart (key ``"g_n"``).
"""
from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _weights(params, wm, key):
    return params[key] if not wm or key not in wm else params[key] * wm[key]


def masked_lstm_params(params: dict, z: np.ndarray, s: np.ndarray, g=None, wm=None) -> dict:
    """Eq. 2 for one sequence: every one of the 4 gate blocks masked alike (rows also by g)."""
    S = np.tile(s, 4) * (1.0 if g is None else g)
    return {"W": _weights(params, wm, "W") * np.outer(S, z), "U": _weights(params, wm, "U") * np.outer(S, s),
            "b": params["b"].copy()}


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


def masked_gru_params(params: dict, z: np.ndarray, s: np.ndarray, g=None, wm=None) -> dict:
    """Eq. 2 for one sequence: every one of the 3 gate blocks (r, u, n) masked alike; the
    rows of W and of U's r, u blocks also by g, the candidate's g_n kept apart."""
    S = np.tile(s, 3)
    n = s.shape[0]
    g = np.ones(3 * n) if g is None else g
    Sh = S * np.concatenate([g[:2 * n], np.ones(n)])
    return {"W": _weights(params, wm, "W") * np.outer(S * g, z), "U": _weights(params, wm, "U") * np.outer(Sh, s),
            "b_i": params["b_i"].copy(), "b_h": params["b_h"].copy(), "g_n": g[2 * n:].copy()}


def gru_plain(params: dict, x: np.ndarray, h0: np.ndarray):
    """PyTorch's GRU on one sequence x (T, m); returns (hs (T, n), h_T).

    r = sigmoid(W_r x + b_ir + U_r h + b_hr), u = sigmoid(W_u x + b_iu + U_u h + b_hu),
    n = tanh(W_n x + b_in + r * (U_n h + b_hn)), h = (1 - u) * n + u * h.
    """
    W, U, b_i, b_h = params["W"], params["U"], params["b_i"], params["b_h"]
    n = U.shape[1]
    g_n = params.get("g_n", np.ones(n))             # Lobacheva et al.'s candidate gate (masked twin only)
    h, hs = h0.copy(), []
    for x_t in x:
        gi = W @ x_t + b_i
        gh = U @ h + b_h
        r = sigmoid(gi[:n] + gh[:n])
        u = sigmoid(gi[n:2 * n] + gh[n:2 * n])
        cand = np.tanh(gi[2 * n:] + g_n * r * gh[2 * n:])
        h = (1 - u) * cand + u * h
        hs.append(h)
    return np.array(hs).reshape(len(x), n), h


def masked_rhn_params(params: dict, z: np.ndarray, s: np.ndarray, g=None, wm=None) -> dict:
    """Eq. 2 for one sequence: the H and T blocks of W and of every R[k] masked alike,
    rows by tile(s, 2) (and micro-step k's g), columns by z (W) or s (each R[k])."""
    S = np.tile(s, 2)
    L, n2 = params["R"].shape[0], 2 * s.shape[0]
    g = np.ones(L * n2) if g is None else g
    R = _weights(params, wm, "R")
    return {"W": _weights(params, wm, "W") * np.outer(S * g[:n2], z),
            "R": np.array([R[k] * np.outer(S * g[k * n2:(k + 1) * n2], s) for k in range(L)]),
            "b": params["b"].copy()}


def rhn_plain(params: dict, x: np.ndarray, q0: np.ndarray):
    """Zilly et al.'s RHN (coupled carry gate) on one sequence x (T, m); returns (qs (T, n), q_T).

    Per time step, for micro-steps k = 1..L: h = tanh(a_H), t = sigmoid(a_T) with
    a = [k = 1] W x_t + R[k] q + b[k], and q = h * t + q * (1 - t).
    """
    W, R, b = params["W"], params["R"], params["b"]
    n = W.shape[0] // 2
    q, qs = q0.copy(), []
    for x_t in x:
        for k in range(len(R)):
            a = R[k] @ q + b[k]
            if k == 0:
                a = a + W @ x_t
            h, t = np.tanh(a[:n]), sigmoid(a[n:])
            q = h * t + q * (1 - t)
        qs.append(q)
    return np.array(qs).reshape(len(x), n), q


#: Each registered cell's slow twin: cell name -> (masked-params function, plain function).
#: A plain function takes (params, x (T, m), *state0) with the state split into its parts,
#: (h0,) or (h0, c0), and returns (outputs (T, n), *final state parts).
TWINS = {
    "lstm": (masked_lstm_params, lstm_plain),
    "gru": (masked_gru_params, gru_plain),
    "rhn": (masked_rhn_params, rhn_plain),
}


def masked_cell_plain(name: str, params: dict, x: np.ndarray, z: np.ndarray, s: np.ndarray, state0, g=None,
                      wm=None):
    """Eq. 2 the slow way: the plain twin of cell ``name`` on each sequence's explicitly
    masked matrices, one sequence at a time.

    x (T, B, m); z (m,) or (B, m); s (n,) or (B, n); ``state0`` in the cell's own form, a
    (B, n) array (GRU h0, RHN q0) or a tuple of them (LSTM (h0, c0)).  Returns
    ``(outputs (T, B, n), final state)``, the final state in the form of ``state0``.
    """
    masked, plain = TWINS[name]
    parts = state0 if isinstance(state0, tuple) else (state0,)
    outs, finals = [], []
    for b in range(x.shape[1]):
        zb = z[b] if z.ndim == 2 else z
        sb = s[b] if s.ndim == 2 else s
        gb = g[b] if g is not None and g.ndim == 2 else g
        out, *final = plain(masked(params, zb, sb, gb, wm), x[:, b], *(part[b] for part in parts))
        outs.append(out)
        finals.append(final)
    final = tuple(np.array(part) for part in zip(*finals))   # each (B, n)
    return np.stack(outs, axis=1), final if isinstance(state0, tuple) else final[0]
