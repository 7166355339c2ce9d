"""The expected size of the compact model: multiply-adds per token and weights, in closed form.

Compaction keeps, of layer l (inputs: neuron group l - 1, units: group l, ``k`` live
neurons each), ``G_W k_{l-1} k_l + G_U k_l**2`` multiply-adds per token, and the softmax
``V k_L`` (``sizes.size_report`` counts the same; the embedding lookup costs none).  The
gates are independent, and ``k`` is a sum of independent Bernoulli variables with the
probabilities ``p = P(z != 0)`` of Eq. 9, so with ``S = sum(p)`` and ``Q = sum(p**2)``::

    E[k_{l-1} k_l] = S_{l-1} S_l                 E[k_l**2] = S_l**2 - Q_l + S_l

which are the two terms of Eq. 7: the expected multiply-adds of a layer are products of
expected widths, and the expected recurrent term splits the diagonal off as Eq. 4 does::

    E[MACs] = sum_l (G_W S_{l-1} S_l + G_U (S_l**2 - Q_l + S_l)) + V S_L
    E[weights] = V S_0 + sum_l (G_W S_{l-1} S_l + G_U (S_l**2 - Q_l + S_l))

(weights: the embedding's and the recurrent layers'; ``--target-params``).  The gradient
in p: layer l adds ``G_W S_l`` to every p of group l - 1 and
``G_W S_{l-1} + G_U (2 S_l - 2 p + 1)`` to group l; the softmax ``V`` to group L, the
embedding ``V`` to group 0.  It reaches ``log_alpha`` through ``dp/dlog_alpha = p (1 - p)``.
"""
from __future__ import annotations

import numpy as np

from .. import hard_concrete as hc
from ..cells import get_cell

MEASURES = ("macs", "params")


def _size_from_widths(config, S, Q, measure: str):
    """The size formula above from per-group sums ``S`` and ``Q``, and its gradient in
    ``S_g`` and ``Q_g`` (lists over groups)."""
    cell = get_cell(config.cell)
    gw, gu = cell.matrix_blocks(**config.cell_options)
    L, V = config.n_layers, config.vocab_size
    total = 0.0
    dS, dQ = [0.0] * (L + 1), [0.0] * (L + 1)
    for l in range(1, L + 1):
        total += gw * S[l - 1] * S[l] + gu * (S[l] ** 2 - Q[l] + S[l])
        dS[l - 1] += gw * S[l]
        dS[l] += gw * S[l - 1] + gu * (2 * S[l] + 1)
        dQ[l] -= gu
    if measure == "macs":
        total += V * S[L]
        dS[L] += V
    else:
        total += V * S[0]
        dS[0] += V
    return float(total), dS, dQ


def _check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")


def full_size(config, measure: str) -> float:
    """The size with every neuron kept: ``realized_size`` of all-one gates."""
    return realized_size(config, [np.ones(n) for n in config.group_sizes], measure)


def expected_size(config, log_alphas, measure: str):
    """``(E[size], d E[size] / d log_alpha per group)`` of the neuron gates ``log_alphas``."""
    _check_measure(measure)
    p = [hc.prob_nonzero(la).astype(np.float64) for la in log_alphas]
    S, Q = [float(q.sum()) for q in p], [float((q ** 2).sum()) for q in p]
    total, dS, dQ = _size_from_widths(config, S, Q, measure)
    grads = [(dS[g] + 2 * dQ[g] * p[g]) * hc.prob_nonzero_grad(la).astype(np.float64)
             for g, la in enumerate(log_alphas)]
    return total, grads


def realized_size(config, gates, measure: str) -> float:
    """The size of the compact model that test-time ``gates`` give (live = gate != 0)."""
    _check_measure(measure)
    k = [float(np.count_nonzero(g)) for g in gates]
    return _size_from_widths(config, k, k, measure)[0]


__all__ = ["MEASURES", "full_size", "expected_size", "realized_size"]
