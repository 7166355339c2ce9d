"""The neuron gates of Wen et al. (section 3): the input and hidden units of a stack of layers.

A stack with input size m and hidden sizes n_1..n_L has L + 1 *gate groups*, one
``log_alpha`` vector each::

    group 0: the input of layer 1 (the embedding's columns)      size m
    group l: the hidden units of layer l, l = 1..L                size n_l

Layer l reads ``z = gates[l - 1]`` and ``s = gates[l]``: the input gate of layer
l + 1 *is* the hidden gate of layer l (one parameter vector, one sample), and the
output layer reads ``gates[L] * h_L``.  Gradients from the two uses of a group
add up in :func:`gate_grads`.

In training, every sequence of a batch draws its own gate vector, shape (B, size),
once, and keeps it for all its time steps.  At test time the gates are the
deterministic values of Eq. 10, 11, shape (size,).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import hard_concrete as hc


def group_sizes(input_size: int, hidden_sizes: Sequence[int]) -> list[int]:
    """Sizes of the gate groups: ``[m, n_1, ..., n_L]``."""
    return [int(input_size)] + [int(n) for n in hidden_sizes]


def init_log_alpha(sizes: Sequence, rng: np.random.Generator, *, drop_rate: float | None = None,
                   mean: float = 1.0, std: float = 0.1, dtype=np.float64) -> list[np.ndarray]:
    """Initial ``log_alpha`` per group (``sizes``: an int or a shape per group).

    By default ``log_alpha ~ N(mean=1, std=0.1)`` as in Wen et al. section 4.
    With ``drop_rate`` given, Louizos et al.'s choice instead:
    ``log_alpha = log(1 - drop_rate) - log(drop_rate) + N(0, 0.01)``, so that the
    test-time gate starts near ``1 - drop_rate`` (before stretching).
    """
    if drop_rate is not None:
        if not 0 < drop_rate < 1:
            raise ValueError(f"drop_rate must lie in (0, 1), got {drop_rate!r}")
        mean, std = float(np.log1p(-drop_rate) - np.log(drop_rate)), 0.01
    if not (np.isfinite(mean) and np.isfinite(std) and std >= 0):
        raise ValueError(f"log_alpha init needs finite mean and std >= 0, got mean={mean!r}, std={std!r}")
    return [rng.normal(mean, std, size).astype(dtype) for size in sizes]


def draw_uniforms(log_alphas: Sequence[np.ndarray], batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One uniform draw per sequence and gate: a (batch, size) array per group."""
    return [hc.uniform(rng, (batch, la.shape[0]), la.dtype) for la in log_alphas]


def sample_gates(log_alphas: Sequence[np.ndarray], uniforms: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Hard concrete gates (Eq. 8) for every group from given uniform draws, (B, size) each."""
    _check_pairs(log_alphas, uniforms, "uniforms")
    return [hc.sample(la, u) for la, u in zip(log_alphas, uniforms)]


def deterministic_gates(log_alphas: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The test-time gates (Eq. 10, 11, ``hard_concrete.deterministic``) of every group, (size,) each."""
    return [hc.deterministic(la) for la in log_alphas]


def live_counts(gates: Sequence[np.ndarray]) -> list[int]:
    """Live neurons (gate != 0) per group of test-time gates, one (size,) array each."""
    out = []
    for l, g in enumerate(gates):
        g = np.asarray(g)
        if g.ndim != 1:
            raise ValueError(f"gate group {l} has shape {g.shape}; pass test-time gates, one (size,) array per group")
        out.append(int(np.count_nonzero(g)))
    return out


def layer_masks(gates: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(z, s)`` for each of the L layers: ``(gates[l - 1], gates[l])``."""
    return [(gates[l], gates[l + 1]) for l in range(len(gates) - 1)]


def gate_grads(d_z: Sequence[np.ndarray], d_s: Sequence[np.ndarray], d_out) -> list[np.ndarray]:
    """Gradients with respect to each gate group, the tied uses added.

    ``d_z[l]`` and ``d_s[l]`` are layer l's mask gradients (as its cell's backward
    returns them) and ``d_out`` the output layer's gradient with respect to
    ``gates[L]``.  Group l receives ``d_s[l - 1] + d_z[l]`` (+ ``d_out`` for the last).
    """
    if len(d_z) != len(d_s):
        raise ValueError(f"got {len(d_z)} input-mask gradients but {len(d_s)} hidden-mask gradients")
    L = len(d_z)
    grads = [np.array(d_z[0], copy=True)]
    for l in range(1, L):
        grads.append(np.asarray(d_s[l - 1]) + np.asarray(d_z[l]))   # (B, n) + (n,) broadcasts
    grads.append(np.asarray(d_s[L - 1]) + np.asarray(d_out))
    return grads


def log_alpha_grads(log_alphas, uniforms, d_gates) -> list[np.ndarray]:
    """Chain the gate gradients through the sampled gates: ``sum_b d_gate * dz/dlog_alpha``."""
    _check_pairs(log_alphas, uniforms, "uniforms")
    _check_pairs(log_alphas, d_gates, "gate gradients")
    out = []
    for la, u, d in zip(log_alphas, uniforms, d_gates):
        g = np.asarray(d) * hc.sample_grad(la, u)
        out.append(g.reshape(-1, la.shape[0]).sum(axis=0))
    return out


def log_alpha_grads_test(log_alphas, d_gates) -> list[np.ndarray]:
    """Chain the gate gradients through the test-time gates (Eq. 10, 11)."""
    _check_pairs(log_alphas, d_gates, "gate gradients")
    out = []
    for la, d in zip(log_alphas, d_gates):
        g = np.asarray(d) * hc.deterministic_grad(la)
        out.append(g.reshape(-1, la.shape[0]).sum(axis=0))
    return out


def _check_pairs(log_alphas, others, name) -> None:
    if len(log_alphas) != len(others):
        raise ValueError(f"got {len(log_alphas)} gate groups but {len(others)} {name}")
    for l, (la, o) in enumerate(zip(log_alphas, others)):
        if np.shape(o)[-1:] != la.shape:
            raise ValueError(f"group {l}: {name} have shape {np.shape(o)}, expected (..., {la.shape[0]})")
