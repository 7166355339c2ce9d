"""Penalties on the gates: the expected L0 norm of Wen et al. (Eq. 4, 7), ``expected_l0.py``."""
from .expected_l0 import (expected_nonzero_per_layer, expected_nonzero_weights, layer_expected_nonzero, penalty,
                          per_layer)

__all__ = ["expected_nonzero_per_layer", "expected_nonzero_weights", "layer_expected_nonzero", "penalty",
           "per_layer"]
