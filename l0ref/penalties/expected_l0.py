"""The expected-L0 penalty (Wen et al. Eq. 4, 7) and the expected count of nonzero weights.

With ``pz = P(z != 0)`` and ``ps = P(s != 0)`` from Eq. 9, the masks
``W * outer(tile(s, G), z)`` and ``U * outer(tile(s, G), s)`` have, in expectation,
per gate block::

    E ||W_hat||_0 = sum(pz) * sum(ps)                       (gates are independent)
    E ||U_hat||_0 = sum_{i != j} ps_i ps_j + sum_j ps_j       (s_j * s_j != 0 iff s_j != 0)
                  = sum(ps)**2 - sum(ps**2) + sum(ps)

so a layer whose W has G_W such blocks and whose recurrent weights have G_U has
:func:`layer_expected_nonzero` ``= G_W E||W_hat||_0 + G_U E||U_hat||_0`` nonzero weights in
expectation.  Eq. 7 is the same sum with the lambdas in place of the block counts::

    R_l = lam1_l * sum(pz) * sum(ps) + lam2_l * (sum(ps)**2 - sum(ps**2) + sum(ps))

The penalty counts one gate block (the paper's Eq. 4 writes W and U per block and
leaves G to the lambdas); :func:`expected_nonzero_weights` counts all G blocks.
Layer l's z is gate group l - 1 and its s is group l (``gates/neurons.py``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import hard_concrete as hc


def per_layer(values, n_layers: int, name: str) -> list[float]:
    """A per-layer list from a scalar or a sequence, checked finite and >= 0."""
    if np.ndim(values) == 0:
        values = [values] * n_layers
    values = [float(v) for v in values]
    if len(values) != n_layers:
        raise ValueError(f"{name} has {len(values)} entries for {n_layers} layers")
    for v in values:
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    return values


def layer_expected_nonzero(pz: np.ndarray, ps: np.ndarray, w_in: float, w_rec: float) -> float:
    """``w_in * sum(pz) sum(ps) + w_rec * (sum(ps)**2 - sum(ps**2) + sum(ps))``: one layer's
    expected nonzero weights with ``(w_in, w_rec) = (G_W, G_U)``, or its Eq. 7 penalty
    with ``(w_in, w_rec) = (lam1, lam2)``.  The one expected-L0 formula of the package."""
    Sz, Ss = pz.sum(), ps.sum()
    return float(w_in * Sz * Ss + w_rec * (Ss ** 2 - (ps ** 2).sum() + Ss))


def penalty(log_alphas: Sequence[np.ndarray], lam1, lam2) -> tuple[float, list[np.ndarray]]:
    """Total penalty ``sum_l R_l`` (Eq. 7) and its gradient with respect to every group's ``log_alpha``.

    ``log_alphas``: the neuron groups ``[(e,), (n_1,), ..., (n_L,)]``; ``lam1`` and ``lam2``
    are scalars or one value per layer (L = len(log_alphas) - 1).  The gradient of
    :func:`layer_expected_nonzero` in ``P`` is ``lam1 Ss`` for pz and
    ``lam1 Sz + lam2 (2 Ss - 2 ps + 1)`` for ps; it reaches ``log_alpha`` through
    ``dP/dlog_alpha = P * (1 - P)``.
    """
    L = len(log_alphas) - 1
    if L < 1:
        raise ValueError("penalty needs at least two gate groups (an input and one layer)")
    lam1, lam2 = per_layer(lam1, L, "lam1"), per_layer(lam2, L, "lam2")
    p = [hc.prob_nonzero(la) for la in log_alphas]
    dp = [np.zeros_like(q) for q in p]
    total = 0.0
    for l in range(L):
        pz, ps = p[l], p[l + 1]
        total += layer_expected_nonzero(pz, ps, lam1[l], lam2[l])
        Sz, Ss = pz.sum(), ps.sum()
        dp[l] += lam1[l] * Ss
        dp[l + 1] += lam1[l] * Sz + lam2[l] * (2 * Ss - 2 * ps + 1)
    grads = [d * hc.prob_nonzero_grad(la) for d, la in zip(dp, log_alphas)]  # dP/dlog_alpha = P(1 - P)
    return total, grads


def expected_nonzero_per_layer(log_alphas, blocks) -> list[float]:
    """Per layer: :func:`layer_expected_nonzero` with ``blocks[l] = (G_W, G_U)``, as the
    cell's ``matrix_blocks`` gives them (LSTM (4, 4), GRU (3, 3), RHN of depth L (2, 2L))."""
    L = len(log_alphas) - 1
    if len(blocks) != L:
        raise ValueError(f"got {len(blocks)} block counts for {L} layers")
    p = [hc.prob_nonzero(la) for la in log_alphas]
    return [layer_expected_nonzero(p[l], p[l + 1], gw, gu) for l, (gw, gu) in enumerate(blocks)]


def expected_nonzero_weights(log_alphas: Sequence[np.ndarray], blocks: Sequence[tuple[int, int]]) -> float:
    """Expected number of nonzero recurrent-stack weights, all gate blocks counted."""
    return float(sum(expected_nonzero_per_layer(log_alphas, blocks)))


__all__ = ["per_layer", "layer_expected_nonzero", "penalty", "expected_nonzero_per_layer",
           "expected_nonzero_weights"]
