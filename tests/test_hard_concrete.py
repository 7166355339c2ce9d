"""Hard concrete gates (Louizos et al. 2018; Wen et al. Eq. 8-11) against their definitions.

- Eq. 9 against ``1 - Q(0)`` and against Monte Carlo frequencies (fixed seed, 5-sigma bound);
- the CDF's finite-difference derivative against the density derived here by hand;
- every ``*_grad`` against central differences (tests.gradcheck), away from the clamp kinks,
  and exactly zero where the hard sigmoid clamps;
- extreme ``log_alpha`` finite in float32 and float64, dtype preserved; bad arguments raise.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

from l0ref import hard_concrete as hc
from tests.gradcheck import check_gradients
from tests.strategies import arrays, gate_pairs, stretched_value, uniform_values, values

SETTINGS = settings(max_examples=40)

BETA, GAMMA, ZETA = hc.BETA, hc.GAMMA, hc.ZETA
LOG_ALPHAS_MC = [-3.0, -1.0, 0.0, 0.7, 2.0, 4.0]
N_MC = 200_000
#: Monte Carlo bound: an empirical frequency of N Bernoulli(p) draws must lie within
#: 5 standard errors sqrt(p (1 - p) / N) of p.  For one comparison a correct p fails with
#: probability 5.7e-7; the seeds are fixed, so the test is also deterministic.
N_SIGMA = 5.0


def _mc_uniforms(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=N_MC)


def _assert_frequency(hits: np.ndarray, p: float, what: str) -> None:
    freq = hits.mean()
    se = np.sqrt(p * (1 - p) / hits.size)
    assert abs(freq - p) <= N_SIGMA * se, f"{what}: frequency {freq:.5f} vs {p:.5f} (5 SE = {N_SIGMA * se:.2e})"


# --- Eq. 9 and the CDF -------------------------------------------------------------------

@SETTINGS
@given(la=arrays((5,), -12.0, 12.0))
def test_prob_nonzero_and_prob_one_are_one_minus_cdf(la):
    np.testing.assert_allclose(hc.prob_nonzero(la), 1 - hc.cdf(0.0, la), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hc.prob_one(la), 1 - hc.cdf(1.0, la), rtol=1e-12, atol=1e-15)
    # and both against the closed forms written out here
    np.testing.assert_allclose(hc.prob_nonzero(la), expit(la - BETA * np.log(-GAMMA / ZETA)), rtol=1e-12)
    np.testing.assert_allclose(hc.prob_one(la), expit(la - BETA * np.log((1 - GAMMA) / (ZETA - 1))), rtol=1e-12)
    assert np.all(hc.prob_one(la) < hc.prob_nonzero(la))


@pytest.mark.parametrize("la", LOG_ALPHAS_MC)
def test_eq9_against_monte_carlo(la):
    u = _mc_uniforms(seed=int(1000 + 10 * la))
    z = hc.sample(np.full(N_MC, la), u)
    _assert_frequency(z != 0, float(hc.prob_nonzero(la)), f"P(z != 0) at log_alpha={la}")
    _assert_frequency(z == 1, float(hc.prob_one(la)), f"P(z == 1) at log_alpha={la}")
    # the CDF in the interior, where z = s_bar: P(z <= t) = Q(t)
    for t in (0.1, 0.5, 0.9):
        _assert_frequency(z <= t, float(hc.cdf(t, la)), f"Q({t}) at log_alpha={la}")


def test_monte_carlo_bound_rejects_a_wrong_probability():
    """The 5-SE bound is tight enough to tell Eq. 9 from the unstretched sigmoid(log_alpha)."""
    z = hc.sample(np.zeros(N_MC), _mc_uniforms(seed=7))
    with pytest.raises(AssertionError):
        _assert_frequency(z != 0, float(expit(0.0)), "sigmoid(log_alpha)")
    _assert_frequency(z != 0, float(hc.prob_nonzero(0.0)), "Eq. 9")


def stretched_density(t, la):
    """Density of s_bar = gamma + (zeta - gamma) * s, derived here from the binary concrete.

    s has CDF F(s) = sigmoid(beta * logit(s) - log_alpha), so its density is
    F (1 - F) * beta * d logit(s)/ds = F (1 - F) * beta / (s (1 - s)); the affine
    stretch divides by its slope (zeta - gamma).
    """
    s = (t - GAMMA) / (ZETA - GAMMA)
    F = expit(BETA * (np.log(s) - np.log1p(-s)) - la)
    return F * (1 - F) * BETA / (s * (1 - s)) / (ZETA - GAMMA)


@SETTINGS
@given(data=st.data())
def test_cdf_derivative_is_the_density(data):
    k = data.draw(st.integers(1, 5))
    t = data.draw(arrays((k,), GAMMA + 0.02, ZETA - 0.02))
    la = data.draw(arrays((k,), -5.0, 5.0))
    w = np.random.default_rng(k).normal(size=k)
    check_gradients(lambda: float(np.sum(w * hc.cdf(t, la))), {"t": t}, {"t": w * stretched_density(t, la)})


def test_cdf_outside_the_stretch():
    la = np.array([-3.0, 0.0, 3.0])
    assert np.all(hc.cdf(GAMMA, la) == 0) and np.all(hc.cdf(GAMMA - 1, la) == 0)
    assert np.all(hc.cdf(ZETA, la) == 1) and np.all(hc.cdf(ZETA + 1, la) == 1)
    q = hc.cdf(np.linspace(GAMMA, ZETA, 101)[:, None], la)
    assert np.all(np.diff(q, axis=0) >= 0)


# --- Gradients ----------------------------------------------------------------------------

def _weights(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


@SETTINGS
@given(pair=gate_pairs("interior"))
def test_sample_grad_matches_finite_differences(pair):
    la, u = pair
    w = _weights(la.shape)
    check_gradients(lambda: float(np.sum(w * hc.sample(la, u))), {"log_alpha": la},
                    {"log_alpha": w * hc.sample_grad(la, u)})
    # and the closed form of docs/design.md: (zeta - gamma) s (1 - s) / beta
    s = (stretched_value(la, u) - GAMMA) / (ZETA - GAMMA)
    np.testing.assert_allclose(hc.sample_grad(la, u), (ZETA - GAMMA) * s * (1 - s) / BETA, rtol=1e-10)


@SETTINGS
@given(pair=gate_pairs("clamped"))
def test_sample_grad_is_zero_where_clamped(pair):
    la, u = pair
    z = hc.sample(la, u)
    t = stretched_value(la, u)
    np.testing.assert_array_equal(z, np.where(t > 1, 1.0, 0.0))   # exact 0 and exact 1
    np.testing.assert_array_equal(hc.sample_grad(la, u), 0.0)
    w = _weights(la.shape)
    check_gradients(lambda: float(np.sum(w * hc.sample(la, u))), {"log_alpha": la},
                    {"log_alpha": np.zeros_like(la)})


@SETTINGS
@given(la=arrays((4,), -40.0, 40.0))
def test_prob_nonzero_grad_is_p_one_minus_p_and_matches_finite_differences(la):
    x = la - BETA * np.log(-GAMMA / ZETA)
    np.testing.assert_allclose(hc.prob_nonzero_grad(la), expit(x) * expit(-x), rtol=1e-12, atol=1e-300)
    w = _weights(la.shape, 1)
    check_gradients(lambda: float(np.sum(w * hc.prob_nonzero(la))), {"log_alpha": la},
                    {"log_alpha": w * hc.prob_nonzero_grad(la)})


#: The test-time gate clamps where sigmoid(log_alpha) leaves (1/12, 11/12): |log_alpha| = log 11.
DET_KINK = float(np.log(11.0))


@SETTINGS
@given(la=arrays((4,), -6.0, 6.0).filter(lambda a: np.all(np.abs(np.abs(a) - DET_KINK) > 0.05)))
def test_deterministic_grad_matches_finite_differences(la):
    w = _weights(la.shape, 2)
    g = hc.deterministic_grad(la)
    check_gradients(lambda: float(np.sum(w * hc.deterministic(la))), {"log_alpha": la}, {"log_alpha": w * g})
    outside = np.abs(la) > DET_KINK
    np.testing.assert_array_equal(g[outside], 0.0)
    np.testing.assert_array_equal(hc.deterministic(la)[outside], np.where(la[outside] > 0, 1.0, 0.0))
    assert np.all(g[~outside] > 0)


# --- Extreme values and dtypes --------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("la", [-1e3, -50.0, 50.0, 1e3])
def test_extreme_log_alpha_is_finite_and_keeps_dtype(dtype, la):
    a = np.full(5, la, dtype=dtype)
    u = np.array([1e-12, 1e-6, 0.5, 1 - 1e-6, 1 - 1e-12])
    t = np.array([GAMMA - 1, GAMMA, 0.0, 0.5, ZETA])
    results = {
        "sample": hc.sample(a, u), "sample_grad": hc.sample_grad(a, u), "concrete": hc.concrete(a, u),
        "prob_nonzero": hc.prob_nonzero(a), "prob_nonzero_grad": hc.prob_nonzero_grad(a),
        "prob_one": hc.prob_one(a), "cdf": hc.cdf(t, a), "deterministic": hc.deterministic(a),
        "deterministic_grad": hc.deterministic_grad(a),
    }
    for name, r in results.items():
        assert r.dtype == dtype, f"{name}: {r.dtype} for {np.dtype(dtype)} input"
        assert r.shape == (5,), name
        assert np.all(np.isfinite(r)), f"{name}({la}) = {r}"
    on = la > 0
    np.testing.assert_array_equal(results["sample"], 1.0 if on else 0.0)
    np.testing.assert_array_equal(results["deterministic"], 1.0 if on else 0.0)
    np.testing.assert_array_equal(results["sample_grad"], 0.0)
    np.testing.assert_array_equal(results["deterministic_grad"], 0.0)
    p = results["prob_nonzero"]
    assert np.all((p == 1.0) if on else (p < 1e-20))
    assert np.all(results["prob_nonzero_grad"] >= 0) and np.all(results["prob_nonzero_grad"] < 1e-20)


@SETTINGS
@given(la=arrays((3,), -8.0, 8.0), u=st.lists(uniform_values(), min_size=3, max_size=3))
def test_float32_agrees_with_float64(la, u):
    # Both precisions see the same (float32-representable) inputs: rounding u itself to
    # float32 near 1 moves logit(u) by up to ~1e-3, an input change, not a float32 error.
    la32, u32 = la.astype(np.float32), np.array(u, dtype=np.float32)
    la64, u64 = la32.astype(np.float64), u32.astype(np.float64)
    for f in (hc.sample, hc.sample_grad):
        np.testing.assert_allclose(f(la32, u32), f(la64, u64), rtol=0, atol=1e-5, err_msg=f.__name__)
    for f in (hc.prob_nonzero, hc.prob_nonzero_grad, hc.prob_one, hc.deterministic):
        np.testing.assert_allclose(f(la32), f(la64), rtol=0, atol=1e-6, err_msg=f.__name__)


# --- Bad arguments ------------------------------------------------------------------------

HYPER_FUNCTIONS = {
    "sample": lambda **kw: hc.sample(0.0, 0.5, **kw),
    "sample_grad": lambda **kw: hc.sample_grad(0.0, 0.5, **kw),
    "prob_nonzero": lambda **kw: hc.prob_nonzero(0.0, **kw),
    "prob_nonzero_grad": lambda **kw: hc.prob_nonzero_grad(0.0, **kw),
    "prob_one": lambda **kw: hc.prob_one(0.0, **kw),
    "cdf": lambda **kw: hc.cdf(0.5, 0.0, **kw),
}
BAD_HYPER = [("beta", 0.0), ("beta", -1.0), ("beta", np.nan), ("gamma", 0.0), ("gamma", 0.5),
             ("zeta", 1.0), ("zeta", 0.9), ("zeta", np.inf)]


@pytest.mark.parametrize("fname", sorted(HYPER_FUNCTIONS))
@pytest.mark.parametrize("name,value", BAD_HYPER)
def test_bad_hyperparameters_raise_naming_the_parameter(fname, name, value):
    with pytest.raises(ValueError, match=name):
        HYPER_FUNCTIONS[fname](**{name: value})


@pytest.mark.parametrize("name,value", [("gamma", 0.0), ("zeta", 1.0)])
def test_deterministic_bad_stretch_raises(name, value):
    for f in (hc.deterministic, hc.deterministic_grad):
        with pytest.raises(ValueError, match=name):
            f(0.0, **{name: value})


def test_check_hyperparameters_accepts_the_defaults():
    hc.check_hyperparameters()
    hc.check_hyperparameters(beta=0.1, gamma=-1e-9, zeta=1 + 1e-9)
    with pytest.raises(ValueError, match="beta"):
        hc.concrete(0.0, 0.5, beta=0.0)


@pytest.mark.parametrize("u", [0.0, 1.0, -0.5, 1.5, np.nan])
@pytest.mark.parametrize("f", [hc.sample, hc.sample_grad, hc.concrete])
def test_u_outside_the_open_unit_interval_raises(f, u):
    with pytest.raises(ValueError, match=r"^u \(uniform draw\)"):
        f(np.zeros(3), np.array([0.5, u, 0.5]))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_log_alpha_raises(bad):
    la = np.array([0.0, bad])
    for f in (hc.prob_nonzero, hc.prob_nonzero_grad, hc.prob_one, hc.deterministic,
              hc.deterministic_grad):
        with pytest.raises(ValueError, match="log_alpha"):
            f(la)
    for f in (hc.sample, hc.sample_grad, hc.concrete):
        with pytest.raises(ValueError, match="log_alpha"):
            f(la, 0.5)
    with pytest.raises(ValueError, match="log_alpha"):
        hc.cdf(0.5, la)


# --- Derived facts (docs/design.md section 1) --------------------------------------------------

def test_center_sample_is_exactly_one_half():
    """u = 0.5, log_alpha = 0: s = 0.5, so s_bar = (gamma + zeta) / 2 = 0.5, no rounding."""
    for dtype in (np.float64, np.float32):
        z = hc.sample(np.zeros(3, dtype), np.full(3, 0.5))
        assert z.dtype == dtype
        assert np.all(z == 0.5), repr(z)


@SETTINGS
@given(la=values(-6.0, 6.0), u=st.lists(uniform_values(), min_size=2, max_size=20))
def test_sample_is_monotone_in_u(la, u):
    u = np.sort(np.array(u))
    z = hc.sample(np.full(u.shape, la), u)
    assert np.all(np.diff(z) >= 0)
    assert np.all((0 <= z) & (z <= 1))


@SETTINGS
@given(la=st.lists(values(-50.0, 50.0), min_size=2, max_size=20), u=uniform_values())
def test_sample_and_deterministic_are_monotone_in_log_alpha(la, u):
    la = np.sort(np.array(la))
    for z in (hc.sample(la, u), hc.deterministic(la), hc.prob_nonzero(la), hc.prob_one(la)):
        assert np.all(np.diff(z) >= 0)


@SETTINGS
@given(la=arrays((6,), -1e3, 1e3))
def test_deterministic_lies_in_unit_interval(la):
    d = hc.deterministic(la)
    assert np.all((0 <= d) & (d <= 1))
    # Eq. 10, 11 written out: clamp(sigmoid(la) * (zeta - gamma) + gamma)
    np.testing.assert_allclose(d, np.clip(expit(la) * (ZETA - GAMMA) + GAMMA, 0, 1), rtol=1e-12, atol=1e-15)


def test_uniform_draws_are_inside_the_clamp_and_reproducible():
    a = hc.uniform(np.random.default_rng(3), (4, 5), np.float32)
    b = hc.uniform(np.random.default_rng(3), (4, 5), np.float32)
    assert a.dtype == np.float32 and a.shape == (4, 5)
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= np.float32(hc.EPS)) & (a <= np.float32(1 - hc.EPS)))
