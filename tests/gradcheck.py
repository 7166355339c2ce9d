"""One gradient checker for the whole suite (after JAX's ``check_grads``).

Fourth-order central differences in float64 with step ``EPS = 1e-4``,

    f'(x) ~ (f(x - 2h) - 8 f(x - h) + 8 f(x + h) - f(x + 2h)) / (12 h),

whose truncation error is O(h**4): small even where a recurrence makes the
derivatives large (a deep RHN with weights near 1 has gradients in the hundreds,
and there the plain two-point difference is off by ~1e-6 relative).  An array's
gradient passes when

    ||analytic - numeric|| <= rtol * (||analytic|| + ||numeric||) + roundoff

with ``rtol = 1e-6`` by default.  ``roundoff`` bounds the floating-point noise of
the central differences themselves: each one carries about ``eps_mach * |f| / EPS``
of it (1.5 of it for this stencil), so for an array of ``size`` entries we allow
ten times ``1.5 * sqrt(size) * eps_mach * max(|f|, 1) / EPS`` -- about 3e-10 for
a loss of 10 and a hundred entries.  It only matters for gradients that are
(nearly) zero; a wrong gradient of any visible size fails by orders of magnitude.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

EPS = 1e-4
FLOOR = 1e-3  # denominator floor of relative_error, for reporting only


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d f / d x by fourth-order central differences, perturbing ``x`` in place (then restoring it)."""
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks run in float64, got {x.dtype}")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise TypeError("numerical_gradient needs a contiguous array to perturb in place")
    for i in range(flat.size):
        old = flat[i]
        values = []
        for step in (-2, -1, 1, 2):
            flat[i] = old + step * eps
            values.append(f())
        flat[i] = old
        f_m2, f_m1, f_p1, f_p2 = values
        gflat[i] = (f_m2 - 8 * f_m1 + 8 * f_p1 - f_p2) / (12 * eps)
    return grad


def relative_error(analytic, numeric) -> float:
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), FLOOR))


def roundoff_bound(f_value: float, size: int, eps: float = EPS) -> float:
    """Ten times the expected round-off norm of ``size`` central differences of ``f``."""
    return 15.0 * np.sqrt(max(size, 1)) * np.finfo(np.float64).eps * max(abs(f_value), 1.0) / eps


def check_gradients(f: Callable[[], float], inputs: dict, analytic: dict, rtol: float = 1e-6,
                    eps: float = EPS) -> dict:
    """Compare ``analytic[name]`` with the central difference of ``f`` in ``inputs[name]``.

    ``f`` takes no arguments and reads the arrays of ``inputs``, which are perturbed
    in place.  Every name of ``inputs`` must have an analytic gradient of the same
    shape (empty arrays are compared by shape only).  Raises ``AssertionError``
    listing every array that fails the bound of the module docstring; returns the
    relative errors.
    """
    f0 = f()
    errors, bad = {}, []
    for name, x in inputs.items():
        if name not in analytic:
            raise AssertionError(f"no analytic gradient for {name!r}")
        a = np.asarray(analytic[name], np.float64)
        if a.shape != x.shape:
            raise AssertionError(f"gradient of {name!r} has shape {a.shape}, input has {x.shape}")
        if x.size == 0:
            errors[name] = 0.0
            continue
        n = numerical_gradient(f, x, eps)
        diff = np.linalg.norm(a - n)
        errors[name] = relative_error(a, n)
        if not diff <= rtol * (np.linalg.norm(a) + np.linalg.norm(n)) + roundoff_bound(f0, x.size, eps):
            bad.append(f"{name}: relative error {errors[name]:.3g} (absolute {diff:.3g})")
    if bad:
        raise AssertionError("gradient check failed: " + "; ".join(bad))
    return errors
