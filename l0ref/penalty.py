"""The expected-L0 penalty (Wen et al. Eq. 4, 7) and the expected count of nonzero weights.

With ``pz = P(z != 0)`` and ``ps = P(s != 0)`` from Eq. 9, the masks
``W * outer(tile(s, G), z)`` and ``U * outer(tile(s, G), s)`` have, in expectation,
per gate block::

    E ||W_hat||_0 = sum(pz) * sum(ps)                       (gates are independent)
    E ||U_hat||_0 = sum_{i != j} ps_i ps_j + sum_j ps_j       (s_j * s_j != 0 iff s_j != 0)
                  = sum(ps)**2 - sum(ps**2) + sum(ps)

Eq. 7 penalizes, per layer l with its own ``lam1_l, lam2_l``::

    R_l = lam1_l * sum(pz) * sum(ps) + lam2_l * (sum(ps)**2 - sum(ps**2) + sum(ps))

The penalty counts one gate block (the paper's Eq. 4 writes W and U per block and
leaves G to the lambdas); :func:`expected_nonzero_weights` counts all G blocks.
Layer l's z is gate group l - 1 and its s is group l (see ``gates.py``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import hard_concrete as hc


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


def layer_penalty(pz: np.ndarray, ps: np.ndarray, lam1: float, lam2: float) -> float:
    """``R_l`` of Eq. 7 from the nonzero probabilities of one layer's gates."""
    Sz, Ss = pz.sum(), ps.sum()
    return float(lam1 * Sz * Ss + lam2 * (Ss ** 2 - (ps ** 2).sum() + Ss))


def penalty(log_alphas: Sequence[np.ndarray], lam1, lam2) -> tuple[float, list[np.ndarray]]:
    """Total penalty ``sum_l R_l`` and its gradient with respect to every group's ``log_alpha``.

    ``lam1`` and ``lam2`` are scalars or one value per layer (L = len(log_alphas) - 1).
    The gradient reaches ``log_alpha`` through ``dP/dlog_alpha = P * (1 - P)``.
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
        total += layer_penalty(pz, ps, lam1[l], lam2[l])
        Sz, Ss = pz.sum(), ps.sum()
        dp[l] += lam1[l] * Ss
        dp[l + 1] += lam1[l] * Sz + lam2[l] * (2 * Ss - 2 * ps + 1)
    grads = [d * hc.prob_nonzero_grad(la) for d, la in zip(dp, log_alphas)]  # dP/dlog_alpha = P(1 - P)
    return total, grads


def expected_nonzero_weights(log_alphas: Sequence[np.ndarray], blocks: Sequence[tuple[int, int]]) -> float:
    """Expected number of nonzero recurrent-stack weights, all gate blocks counted.

    ``blocks[l] = (G_W, G_U)`` for layer l, as the cell's ``weight_blocks`` gives it
    (LSTM (4, 4), GRU (3, 3), RHN of depth L (2, 2L)).
    """
    return float(sum(expected_nonzero_per_layer(log_alphas, blocks)))


def expected_nonzero_per_layer(log_alphas, blocks) -> list[float]:
    """Per layer: ``G_W * sum(pz) * sum(ps) + G_U * (sum(ps)**2 - sum(ps**2) + sum(ps))``."""
    L = len(log_alphas) - 1
    if len(blocks) != L:
        raise ValueError(f"got {len(blocks)} block counts for {L} layers")
    p = [hc.prob_nonzero(la) for la in log_alphas]
    out = []
    for l, (gw, gu) in enumerate(blocks):
        pz, ps = p[l], p[l + 1]
        out.append(float(gw * pz.sum() * ps.sum() + gu * (ps.sum() ** 2 - (ps ** 2).sum() + ps.sum())))
    return out
