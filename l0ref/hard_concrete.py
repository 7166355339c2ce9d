"""Hard concrete gates (Louizos, Welling, Kingma 2018; Wen et al. Eq. 5-11).

One gate per neuron, one parameter ``log_alpha`` per gate.  With a uniform draw
``u ~ U(0, 1)``::

    s     = sigmoid((log u - log(1 - u) + log_alpha) / beta)     # binary concrete, Eq. 8
    s_bar = s * (zeta - gamma) + gamma                            # stretched to (gamma, zeta)
    z     = min(1, max(0, s_bar))                                 # hard sigmoid: exact 0 and 1

A note on names.  We call the *lower* end of the stretch ``gamma = -0.1`` and the
*upper* end ``zeta = 1.1``, as Louizos et al. do.  The printed Eq. 8 of Wen et al.
swaps them (it asks for ``zeta < 0`` and ``gamma > 1``); with those names its Eq. 8
and Eq. 9 contradict each other, so we follow Louizos et al.  Every formula in this
module uses ``gamma < 0 < 1 < zeta``.

All functions work elementwise on arrays of any shape, in float32 or float64, and
stay finite for ``log_alpha`` as large as +-50 (the sigmoid is SciPy's ``expit``,
which does not overflow).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

BETA = 2.0 / 3.0  #: temperature of the binary concrete
GAMMA = -0.1  #: lower end of the stretch (Wen et al. Eq. 8 calls this zeta)
ZETA = 1.1  #: upper end of the stretch (Wen et al. Eq. 8 calls this gamma)
EPS = 1e-6  #: uniform draws are clamped into [EPS, 1 - EPS] before the logit

__all__ = [
    "BETA", "GAMMA", "ZETA", "EPS",
    "check_hyperparameters", "uniform", "concrete", "sample", "sample_grad",
    "prob_nonzero", "prob_nonzero_grad", "prob_one", "cdf",
    "deterministic", "deterministic_grad",
]


def check_hyperparameters(beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> None:
    """Raise ``ValueError`` naming the parameter if the stretch is impossible.

    The hard concrete needs a positive temperature and a stretch interval that
    strictly contains [0, 1], so that exact zeros and exact ones both have mass.
    """
    for name, value in (("beta", beta), ("gamma", gamma), ("zeta", zeta)):
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if beta <= 0:
        raise ValueError(f"beta (temperature) must be > 0, got {beta!r}")
    if gamma >= 0:
        raise ValueError(f"gamma (lower stretch end) must be < 0, got {gamma!r}")
    if zeta <= 1:
        raise ValueError(f"zeta (upper stretch end) must be > 1, got {zeta!r}")


def _as_float(a) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    return a


def _check_log_alpha(log_alpha) -> np.ndarray:
    log_alpha = _as_float(log_alpha)
    if not np.all(np.isfinite(log_alpha)):
        raise ValueError("log_alpha contains NaN or inf")
    return log_alpha


def _check_u(u, dtype) -> np.ndarray:
    # Checked in the caller's own precision, then clamped, then cast: a float64 draw
    # just below 1 is valid even where float32 would round it up to 1.
    u = _as_float(u)
    if np.any(np.isnan(u)) or np.any(u <= 0) or np.any(u >= 1):
        raise ValueError("u (uniform draw) must lie strictly inside (0, 1)")
    return np.clip(u, EPS, 1 - EPS).astype(dtype, copy=False)


def _stretch(s, gamma: float, zeta: float):
    """``s * (zeta - gamma) + gamma``, written as ``s * zeta + (1 - s) * gamma``.

    The two are equal in exact arithmetic; the second is exact at ``s = 0.5``
    (it gives ``(zeta + gamma) / 2 = 0.5`` with no rounding, where the first gives
    ``0.5000000000000001`` in float64) and is equally monotone in ``s``.
    """
    return s * zeta + (1 - s) * gamma


def uniform(rng: np.random.Generator, shape, dtype=np.float64) -> np.ndarray:
    """Uniform draws for :func:`sample`, inside [EPS, 1 - EPS]."""
    return rng.uniform(EPS, 1 - EPS, size=shape).astype(dtype, copy=False)


def concrete(log_alpha, u, beta: float = BETA) -> np.ndarray:
    """The binary concrete variable ``s`` of Eq. 8, before stretching."""
    check_hyperparameters(beta, GAMMA, ZETA)
    log_alpha = _check_log_alpha(log_alpha)
    u = _check_u(u, log_alpha.dtype)
    return expit((np.log(u) - np.log1p(-u) + log_alpha) / beta).astype(log_alpha.dtype, copy=False)


def sample(log_alpha, u, *, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> np.ndarray:
    """A hard concrete sample ``z = min(1, max(0, s * (zeta - gamma) + gamma))`` (Eq. 8).

    ``u`` is the uniform draw, given so that callers (and tests) fix the noise;
    it broadcasts against ``log_alpha``: ``u`` of shape (B, n) with ``log_alpha``
    of shape (n,) gives one gate vector per sequence.
    """
    check_hyperparameters(beta, gamma, zeta)
    s = concrete(log_alpha, u, beta)
    return np.clip(_stretch(s, gamma, zeta), 0.0, 1.0).astype(s.dtype, copy=False)


def sample_grad(log_alpha, u, *, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> np.ndarray:
    """``dz / dlog_alpha`` of :func:`sample`, shape of the broadcast of ``log_alpha`` and ``u``.

    ``(zeta - gamma) * s * (1 - s) / beta`` where the stretched value lies in (0, 1),
    zero where the hard sigmoid clamps it (there ``z`` is flat in ``log_alpha``).
    """
    check_hyperparameters(beta, gamma, zeta)
    s = concrete(log_alpha, u, beta)
    s_bar = _stretch(s, gamma, zeta)  # the same value sample() clamps: the same kinks
    inside = (s_bar > 0) & (s_bar < 1)
    return np.where(inside, (zeta - gamma) * s * (1 - s) / beta, 0.0).astype(s.dtype, copy=False)


def prob_nonzero(log_alpha, *, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> np.ndarray:
    """``P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))`` (Eq. 9).

    This is ``1 - cdf(0, log_alpha)``: the chance that the stretched variable
    lands above zero.
    """
    check_hyperparameters(beta, gamma, zeta)
    log_alpha = _check_log_alpha(log_alpha)
    return expit(log_alpha - beta * np.log(-gamma / zeta)).astype(log_alpha.dtype, copy=False)


def prob_nonzero_grad(log_alpha, *, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> np.ndarray:
    """``dP(z != 0) / dlog_alpha = P * (1 - P)``.

    Computed as ``sigmoid(x) * sigmoid(-x)`` (``x`` the argument of Eq. 9), not as
    ``P * (1 - P)``: the subtraction ``1 - P`` loses the relative accuracy of the
    gradient as ``P`` approaches 1 (and rounds it to 0 beyond ``log_alpha`` ~ 37).
    """
    check_hyperparameters(beta, gamma, zeta)
    log_alpha = _check_log_alpha(log_alpha)
    x = log_alpha - beta * np.log(-gamma / zeta)
    return (expit(x) * expit(-x)).astype(log_alpha.dtype, copy=False)


def cdf(t, log_alpha, *, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> np.ndarray:
    """CDF ``Q(t) = P(s_bar <= t)`` of the stretched binary concrete.

    For ``gamma < t < zeta``: ``Q(t) = sigmoid(beta * (log(t - gamma) - log(zeta - t)) - log_alpha)``;
    0 at and below ``gamma`` and 1 at and above ``zeta``.  So ``P(z == 0) = Q(0)``,
    ``P(z != 0) = 1 - Q(0)`` (Eq. 9) and ``P(z == 1) = 1 - Q(1)``.
    """
    check_hyperparameters(beta, gamma, zeta)
    log_alpha = _check_log_alpha(log_alpha)
    t = np.asarray(t, dtype=log_alpha.dtype)
    if np.any(np.isnan(t)):
        raise ValueError("t (where the CDF is taken) contains NaN")
    t, log_alpha = np.broadcast_arrays(t, log_alpha)
    inside = (t > gamma) & (t < zeta)
    tc = np.where(inside, t, 0.5)  # any interior point keeps the logs finite
    q = expit(beta * (np.log(tc - gamma) - np.log(zeta - tc)) - log_alpha)
    return np.where(inside, q, np.where(t >= zeta, 1.0, 0.0)).astype(log_alpha.dtype, copy=False)


def prob_one(log_alpha, *, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> np.ndarray:
    """``P(z == 1) = 1 - Q(1)``: the chance that the hard sigmoid clamps at one."""
    check_hyperparameters(beta, gamma, zeta)
    log_alpha = _check_log_alpha(log_alpha)
    # 1 - sigmoid(x) = sigmoid(-x), computed without cancellation
    x = beta * (np.log(1 - gamma) - np.log(zeta - 1)) - log_alpha
    return expit(-x).astype(log_alpha.dtype, copy=False)


def deterministic(log_alpha, *, gamma: float = GAMMA, zeta: float = ZETA) -> np.ndarray:
    """Test-time gate ``min(1, max(0, sigmoid(log_alpha) * (zeta - gamma) + gamma))`` (Eq. 10, 11).

    Gates whose value is exactly 0 belong to pruned neurons; the others are
    numbers in (0, 1] that compaction folds into the weights.  As in Louizos et
    al., the test-time estimator has no temperature.
    """
    check_hyperparameters(BETA, gamma, zeta)
    log_alpha = _check_log_alpha(log_alpha)
    return np.clip(_stretch(expit(log_alpha), gamma, zeta), 0.0, 1.0).astype(log_alpha.dtype, copy=False)


def deterministic_grad(log_alpha, *, gamma: float = GAMMA, zeta: float = ZETA) -> np.ndarray:
    """``d deterministic / dlog_alpha``: ``(zeta - gamma) * a * (1 - a)`` inside (0, 1), else 0."""
    check_hyperparameters(BETA, gamma, zeta)
    log_alpha = _check_log_alpha(log_alpha)
    a = expit(log_alpha)
    s_bar = _stretch(a, gamma, zeta)
    inside = (s_bar > 0) & (s_bar < 1)
    return np.where(inside, (zeta - gamma) * a * (1 - a), 0.0).astype(log_alpha.dtype, copy=False)
