"""Penalties on the gates: the expected L0 norm of Wen et al. (Eq. 4, 7), ``expected_l0.py``;
the expected size of the compact model (multiply-adds, weights) for a target, ``expected_size.py``."""
from .expected_l0 import (expected_nonzero_all, expected_nonzero_per_layer, expected_nonzero_weights,
                          layer_expected_nonzero, layer_expected_nonzero_all, penalty, penalty_all, per_layer)
from .expected_size import MEASURES, expected_size, full_size, realized_size

__all__ = ["expected_nonzero_all", "layer_expected_nonzero_all", "penalty_all", "MEASURES", "expected_size", "full_size", "realized_size", "expected_nonzero_per_layer", "expected_nonzero_weights", "layer_expected_nonzero", "penalty",
           "per_layer"]
