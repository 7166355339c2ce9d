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


# --- Every gate family (Lobacheva et al.'s three levels, with L0 gates) -----------------------

def layer_expected_nonzero_all(pz, ps, pg, pw_in, pw_rec, rows_in: int, rows_rec: int, w_in: float, w_rec: float):
    """One layer's expected nonzero effective weights under every gate family, weighted:
    ``w_in E||W_hat||_0 + w_rec E||U_hat||_0``, and its gradient in every probability.

    The effective weights (``docs/design.md`` section 6; R rows of W, P rows of U, unit
    ``u(r) = r mod n`` of row r, ``pg`` over U's rows, W's rows the first R of them)::

        W_hat[r, i] = W[r, i] M_W[r, i] g_r s_u(r) z_i        U_hat[r, j] = U[r, j] M_U[r, j] g_r s_u(r) s_j

    A weight is nonzero iff every gate on it is (``s_u(r) s_j`` iff both are, one gate
    when ``j = u(r)``), and the gates are independent, so with the row probabilities
    ``rW_r = pg_r ps_u(r)`` and ``rU_r`` alike::

        E||W_hat||_0 = sum_{r,i} pw_in[r,i] rW_r pz_i
        E||U_hat||_0 = sum_{r,j} pw_rec[r,j] rU_r ps_j + sum_r pw_rec[r,u(r)] rU_r (1 - ps_u(r))

    (the diagonal counts ``s_u(r)`` once, as Eq. 4 does).  Without weight gates the sums
    factorize, and no (rows x columns) array is formed::

        E||W_hat||_0 = (sum_r rW_r) (sum_i pz_i)
        E||U_hat||_0 = sum_r rU_r (sum_j ps_j - ps_u(r) + 1)

    which with ``pg = 1`` is ``G_W S_z S_s`` and ``G_U (S_s**2 - sum ps**2 + S_s)``, Eq. 7's
    two terms times the block counts.  ``pg`` (P,) or None (no preactivation gates: ones);
    ``pw_in`` (R, m), ``pw_rec`` (P, n) or None.  Returns ``(value, grads)``, ``grads`` a dict
    with ``pz, ps, pg, pw_in, pw_rec`` (None for an absent family).
    """
    n = ps.shape[0]
    unit_in, unit_rec = np.arange(rows_in) % max(n, 1), np.arange(rows_rec) % max(n, 1)
    pg_rec = np.ones(rows_rec) if pg is None else pg
    pg_in = pg_rec[:rows_in]
    rW, rU = pg_in * ps[unit_in], pg_rec * ps[unit_rec]
    if pw_in is None:
        Sz, SrW = pz.sum(), rW.sum()
        E_in = SrW * Sz
        d_pz, d_rW, d_pw_in = np.full_like(pz, SrW), np.full_like(rW, Sz), None
    else:
        E_in = float(rW @ pw_in @ pz)
        d_pz, d_rW, d_pw_in = rW @ pw_in, pw_in @ pz, np.outer(rW, pz)
    if pw_rec is None:
        Ss = ps.sum()
        col = Ss - ps[unit_rec] + 1                       # (P,)
        E_rec = float(rU @ col)
        d_rU = col
        d_ps_cols = np.full_like(ps, rU.sum()) - np.bincount(unit_rec, rU, minlength=n)
        d_pw_rec = None
    else:
        diag = pw_rec[np.arange(rows_rec), unit_rec]      # pw_rec[r, u(r)]
        one_minus = 1 - ps[unit_rec]
        E_rec = float(rU @ pw_rec @ ps + (diag * rU * one_minus).sum())
        d_rU = pw_rec @ ps + diag * one_minus
        d_ps_cols = rU @ pw_rec - np.bincount(unit_rec, diag * rU, minlength=n)
        d_pw_rec = np.outer(rU, ps)
        d_pw_rec[np.arange(rows_rec), unit_rec] += rU * one_minus
    d_rW, d_rU = w_in * d_rW, w_rec * d_rU
    d_ps = (w_rec * d_ps_cols + np.bincount(unit_in, d_rW * pg_in, minlength=n)
            + np.bincount(unit_rec, d_rU * pg_rec, minlength=n))
    d_pg = None
    if pg is not None:
        d_pg = d_rU * ps[unit_rec]
        d_pg[:rows_in] += d_rW * ps[unit_in]
    grads = {"pz": w_in * d_pz, "ps": d_ps, "pg": d_pg,
             "pw_in": None if d_pw_in is None else w_in * d_pw_in,
             "pw_rec": None if d_pw_rec is None else w_rec * d_pw_rec}
    return float(w_in * E_in + w_rec * E_rec), grads


def _probabilities(log_alpha: dict) -> dict:
    return {family: [hc.prob_nonzero(la).astype(np.float64) for la in las] for family, las in log_alpha.items()}


def _layer_inputs(config, p: dict, l: int):
    """Layer l's ``(pz, ps, pg, pw_in, pw_rec, rows_in, rows_rec)`` from the probabilities of
    every family (``pw_rec`` with the RHN's micro-steps stacked as rows)."""
    from ..cells import get_cell
    cell = get_cell(config.cell)
    m, n = config.layer_sizes[l]
    gw, gu = cell.matrix_blocks(**config.cell_options)
    pz, ps = p["neurons"][l], p["neurons"][l + 1]
    pg = p["preact"][l] if "preact" in p else None
    pw_in = pw_rec = None
    if "weights" in p:
        K = len(cell.MATRIX_KEYS)
        pw_in, pw_rec = p["weights"][l * K], p["weights"][l * K + 1].reshape(gu * n, n)
    return pz, ps, pg, pw_in, pw_rec, gw * n, gu * n


def expected_nonzero_all(config, log_alpha: dict) -> list[float]:
    """Per layer: the expected nonzero effective weights of its input and recurrent
    matrices, every gate block and every family counted (:func:`layer_expected_nonzero_all`)."""
    p = _probabilities(log_alpha)
    return [layer_expected_nonzero_all(*_layer_inputs(config, p, l), 1.0, 1.0)[0] for l in range(config.n_layers)]


def penalty_all(config, log_alpha: dict, lam1, lam2, lam_vocab: float = 0.0, lam_preact=0.0, lam_weights=0.0):
    """The penalty with every gate family, and its gradient in every ``log_alpha``.

    Layer l adds ``lam1_l E||W_hat||_0 / G_W + lam2_l E||U_hat||_0 / G_U`` (Eq. 7's terms, per
    gate block, every family in the expectation: :func:`layer_expected_nonzero_all`); with
    vocabulary gates the embedding adds ``lam_vocab E||emb_hat||_0 = lam_vocab sum(pv) S_z``
    (word w, column i nonzero iff ``v_w`` and ``z_i`` are).  ``lam_preact`` and
    ``lam_weights`` (per layer) add Louizos et al.'s plain L0 count of a family's own gates,
    ``lam sum(p)``, an extra push on that family alone (0: none).  All in units of the
    caller's (``training/weights.py``: 0.08/N).  With the neuron gates alone,
    :func:`penalty` (Eq. 7) is computed instead, bit for bit.
    """
    L = config.n_layers
    if set(log_alpha) == {"neurons"}:
        total, grads = penalty(log_alpha["neurons"], lam1, lam2)
        return total, {"neurons": grads}
    lam1, lam2 = per_layer(lam1, L, "lam1"), per_layer(lam2, L, "lam2")
    lam_preact, lam_weights = per_layer(lam_preact, L, "lam_preact"), per_layer(lam_weights, L, "lam_weights")
    p = _probabilities(log_alpha)
    dp = {family: [np.zeros_like(q) for q in qs] for family, qs in p.items()}
    from ..cells import get_cell
    cell = get_cell(config.cell)
    gw, gu = cell.matrix_blocks(**config.cell_options)
    total = 0.0
    for l in range(L):
        pz, ps, pg, pw_in, pw_rec, rows_in, rows_rec = _layer_inputs(config, p, l)
        value, g = layer_expected_nonzero_all(pz, ps, pg, pw_in, pw_rec, rows_in, rows_rec,
                                              lam1[l] / gw, lam2[l] / gu)
        total += value
        dp["neurons"][l] += g["pz"]
        dp["neurons"][l + 1] += g["ps"]
        if pg is not None:
            dp["preact"][l] += g["pg"] + lam_preact[l]
            total += lam_preact[l] * float(pg.sum())
        if pw_in is not None:
            K = len(cell.MATRIX_KEYS)
            dp["weights"][l * K] += g["pw_in"] + lam_weights[l]
            dp["weights"][l * K + 1] += g["pw_rec"].reshape(dp["weights"][l * K + 1].shape) + lam_weights[l]
            total += lam_weights[l] * float(pw_in.sum() + pw_rec.sum())
    if "vocab" in p:
        pv, pz0 = p["vocab"][0], p["neurons"][0]
        total += lam_vocab * float(pv.sum() * pz0.sum())
        dp["vocab"][0] += lam_vocab * pz0.sum()
        dp["neurons"][0] += lam_vocab * pv.sum()
    grads = {family: [(d * hc.prob_nonzero_grad(la)).astype(la.dtype) for d, la in zip(dp[family], las)]
             for family, las in log_alpha.items()}
    return float(total), grads


__all__ = ["per_layer", "layer_expected_nonzero", "penalty", "expected_nonzero_per_layer",
           "expected_nonzero_weights", "layer_expected_nonzero_all", "expected_nonzero_all", "penalty_all"]
