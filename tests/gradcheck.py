"""One gradient checker for the whole suite (after JAX's ``check_grads``).

Central differences in float64.  The error of an array's gradient is

    ||analytic - numeric|| / max(||analytic|| + ||numeric||, FLOOR)

and must not exceed ``rtol`` (1e-6 by default).  With the step ``EPS = 1e-5`` and
O(1) losses, the round-off of a central difference is ~1e-11 and its truncation
error ~1e-10, so a correct gradient scores ~1e-9 and a wrong one ~1.  ``FLOOR``
only matters for gradients that are (nearly) zero everywhere: it makes the test
an absolute one at 1e-6 * FLOOR = 1e-9 there.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

EPS = 1e-5
FLOOR = 1e-3


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d f / d x by central differences, perturbing ``x`` in place (restored afterwards)."""
    if x.dtype != np.float64:
        raise TypeError(f"gradient checks run in float64, got {x.dtype}")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise TypeError("numerical_gradient needs a contiguous array to perturb in place")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def relative_error(analytic, numeric) -> float:
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), FLOOR))


def check_gradients(f: Callable[[], float], inputs: dict, analytic: dict, rtol: float = 1e-6,
                    eps: float = EPS) -> dict:
    """Compare ``analytic[name]`` with the central difference of ``f`` in ``inputs[name]``.

    ``f`` takes no arguments and reads the arrays of ``inputs``, which are perturbed
    in place.  Every name of ``inputs`` must have an analytic gradient of the same
    shape.  Raises ``AssertionError`` listing every array whose error exceeds
    ``rtol``; returns the errors.
    """
    errors, bad = {}, []
    for name, x in inputs.items():
        if name not in analytic:
            raise AssertionError(f"no analytic gradient for {name!r}")
        a = np.asarray(analytic[name])
        if a.shape != x.shape:
            raise AssertionError(f"gradient of {name!r} has shape {a.shape}, input has {x.shape}")
        errors[name] = relative_error(a, numerical_gradient(f, x, eps))
        if not errors[name] <= rtol:
            bad.append(f"{name}: relative error {errors[name]:.3g}")
    if bad:
        raise AssertionError("gradient check failed: " + "; ".join(bad))
    return errors
