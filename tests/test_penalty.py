"""The expected-L0 penalty (Wen et al. Eq. 4, 7) against its definition.

The closed form is checked against a brute-force expectation: every binary pattern
of which gates are nonzero is enumerated, weighted by its probability (the gates are
independent, each nonzero with probability P(z != 0) of Eq. 9), and the nonzeros of
the explicit masked matrices ``W * outer(tile(s, G), z)`` and ``U * outer(tile(s, G), s)``
are counted.  Its gradient is checked against central differences (tests.gradcheck).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref import hard_concrete as hc
from l0ref.penalties import expected_nonzero_per_layer, expected_nonzero_weights, penalty
from tests.gradcheck import check_gradients
from tests.strategies import penalty_problem

SETTINGS = settings(max_examples=30)


@SETTINGS
@given(problem=penalty_problem())
def test_penalty_gradient_matches_finite_differences(problem):
    log_alphas, lam1, lam2 = problem
    _, grads = penalty(log_alphas, lam1, lam2)
    inputs = {f"group{g}": la for g, la in enumerate(log_alphas)}
    analytic = {f"group{g}": d for g, d in enumerate(grads)}
    check_gradients(lambda: penalty(log_alphas, lam1, lam2)[0], inputs, analytic)


def brute_force_expectation(log_alphas, layer_count, rng):
    """E[sum_l layer_count(l, z_l, s_l)] over every nonzero pattern of every gate.

    A pattern's nonzero gates get values drawn in (0, 1] (the value of a nonzero gate
    does not change a count of nonzeros), its zero gates are 0.
    """
    p = [hc.prob_nonzero(la) for la in log_alphas]
    sizes = [la.shape[0] for la in log_alphas]
    total, mass = 0.0, 0.0
    for bits in itertools.product((0, 1), repeat=sum(sizes)):
        bits = np.array(bits)
        groups = np.split(bits, np.cumsum(sizes)[:-1])
        weight = np.prod([np.prod(np.where(on == 1, q, 1 - q)) for on, q in zip(groups, p)])
        gates = [on * rng.uniform(0.1, 1.0, on.shape) for on in groups]
        count = sum(layer_count(l, gates[l], gates[l + 1]) for l in range(len(sizes) - 1))
        total += weight * count
        mass += weight
    assert abs(mass - 1) < 1e-12
    return total


def masked_nonzeros(z, s, G_W, G_U, rng):
    """||W * outer(tile(s, G_W), z)||_0 and ||U * outer(tile(s, G_U), s)||_0 with
    weights W (G_W n, m), U (G_U n, n) that have no zero entries."""
    n, m = s.shape[0], z.shape[0]
    W = rng.uniform(0.5, 1.0, (G_W * n, m)) * rng.choice([-1, 1], (G_W * n, m))
    U = rng.uniform(0.5, 1.0, (G_U * n, n)) * rng.choice([-1, 1], (G_U * n, n))
    W_hat = W * np.outer(np.tile(s, G_W), z)
    U_hat = U * np.outer(np.tile(s, G_U), s)
    return np.count_nonzero(W_hat), np.count_nonzero(U_hat)


@st.composite
def tiny_stack(draw):
    """1 or 2 layers, every group of size 1..3 (at most 9 gates, 512 patterns)."""
    L = draw(st.integers(1, 2))
    sizes = draw(st.lists(st.integers(1, 3), min_size=L + 1, max_size=L + 1))
    la = [np.array(draw(st.lists(st.floats(-4, 4, allow_subnormal=False), min_size=k, max_size=k)))
          for k in sizes]
    lam1 = draw(st.lists(st.floats(0, 2), min_size=L, max_size=L))
    lam2 = draw(st.lists(st.floats(0, 2), min_size=L, max_size=L))
    return la, lam1, lam2


@settings(max_examples=15)
@given(problem=tiny_stack())
def test_penalty_equals_brute_force_expectation(problem):
    log_alphas, lam1, lam2 = problem
    rng = np.random.default_rng(0)

    def count(l, z, s):
        nW, nU = masked_nonzeros(z, s, 1, 1, rng)     # the penalty counts one gate block
        return lam1[l] * nW + lam2[l] * nU

    expected = brute_force_expectation(log_alphas, count, rng)
    value, _ = penalty(log_alphas, lam1, lam2)
    assert abs(value - expected) <= 1e-12 * max(1.0, abs(expected)), (value, expected)


@pytest.mark.parametrize("blocks_of", [lambda L: [(4, 4)] * L, lambda L: [(2, 2 * (l + 2)) for l in range(L)]],
                         ids=["lstm", "rhn"])
@settings(max_examples=10)
@given(problem=tiny_stack())
def test_expected_nonzero_weights_equals_brute_force(blocks_of, problem):
    log_alphas, _, _ = problem
    blocks = blocks_of(len(log_alphas) - 1)
    rng = np.random.default_rng(1)

    def count(l, z, s):
        return sum(masked_nonzeros(z, s, *blocks[l], rng))

    expected = brute_force_expectation(log_alphas, count, rng)
    value = expected_nonzero_weights(log_alphas, blocks)
    assert abs(value - expected) <= 1e-12 * max(1.0, abs(expected)), (value, expected)
    assert sum(expected_nonzero_per_layer(log_alphas, blocks)) == pytest.approx(value, rel=1e-14)


def test_all_gates_on_counts_every_weight():
    """log_alpha = 50: every gate is nonzero, so the counts are the full matrix sizes."""
    m, n1, n2 = 3, 5, 4
    la = [np.full(m, 50.0), np.full(n1, 50.0), np.full(n2, 50.0)]
    assert expected_nonzero_per_layer(la, [(4, 4), (4, 4)]) == [4 * n1 * m + 4 * n1 * n1, 4 * n2 * n1 + 4 * n2 * n2]
    value, grads = penalty(la, [1.0, 2.0], [3.0, 4.0])
    assert value == 1.0 * n1 * m + 3.0 * n1 * n1 + 2.0 * n2 * n1 + 4.0 * n2 * n2
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_scalar_lambdas_apply_to_every_layer():
    rng = np.random.default_rng(2)
    la = [rng.normal(size=k) for k in (3, 4, 2)]
    v1, g1 = penalty(la, 0.5, 0.25)
    v2, g2 = penalty(la, [0.5, 0.5], [0.25, 0.25])
    assert v1 == v2
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("lam1,lam2,name", [
    (-0.1, 0.1, "lam1"), (0.1, -1e-9, "lam2"), (np.nan, 0.1, "lam1"), (0.1, np.nan, "lam2"),
    ([0.1, -0.1], 0.1, "lam1"), (np.inf, 0.1, "lam1"),
    ([0.1], 0.1, "lam1"), (0.1, [0.1, 0.1, 0.1], "lam2"),      # two layers: wrong counts
])
def test_bad_lambdas_raise(lam1, lam2, name):
    la = [np.zeros(2), np.zeros(3), np.zeros(2)]
    with pytest.raises(ValueError, match=name):
        penalty(la, lam1, lam2)


def test_bad_groups_and_blocks_raise():
    with pytest.raises(ValueError, match="two gate groups"):
        penalty([np.zeros(3)], 0.1, 0.1)
    with pytest.raises(ValueError, match="log_alpha"):
        penalty([np.zeros(3), np.array([0.0, np.nan])], 0.1, 0.1)
    with pytest.raises(ValueError, match="block counts"):
        expected_nonzero_weights([np.zeros(2), np.zeros(3)], [(4, 4), (4, 4)])
