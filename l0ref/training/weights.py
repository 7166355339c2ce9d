"""The penalty weights (the lambdas of Eq. 7) as training state.

The step asks :meth:`PenaltyWeights.current` for the lambdas of every layer; a
checkpoint stores :meth:`PenaltyWeights.to_json` and a resumed run continues from it,
never from the config, so weights that change during training (a target-sparsity
controller) resume exactly.  Today's weights are fixed: the config's multipliers times
the unit of Wen et al. Table 2, ``0.08 / N`` with N the number of training tokens (the
package docstring says why).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..penalties import per_layer
from .config import LAMBDA_UNIT


def broadcast_layers(values, n_layers: int, name: str) -> list[float]:
    """One value for every layer, or one per layer: a list of ``n_layers`` values."""
    values = list(values)
    if len(values) == 1:
        return values * n_layers
    if len(values) != n_layers:
        raise ValueError(f"{name} has {len(values)} values for {n_layers} layers (give one or {n_layers})")
    return values


@dataclass
class PenaltyWeights:
    """Absolute per-layer ``lam1`` (input gates) and ``lam2`` (hidden gates) of Eq. 7."""

    lam1: list
    lam2: list
    KIND = "fixed"

    def __post_init__(self):
        if len(self.lam1) != len(self.lam2):
            raise ValueError(f"lam1 has {len(self.lam1)} layers, lam2 {len(self.lam2)}")
        self.lam1 = per_layer(self.lam1, len(self.lam1), "lam1")
        self.lam2 = per_layer(self.lam2, len(self.lam2), "lam2")

    @classmethod
    def from_config(cls, config, n_layers: int, n_train_tokens: int) -> "PenaltyWeights":
        """The config's multipliers (``lam1``, ``lam2``) times ``0.08 / n_train_tokens``."""
        if n_train_tokens < 1:
            raise ValueError(f"the number of training tokens must be >= 1, got {n_train_tokens}")
        unit = LAMBDA_UNIT / n_train_tokens
        lam1 = per_layer(broadcast_layers(config.lam1, n_layers, "lam1"), n_layers, "lam1")
        lam2 = per_layer(broadcast_layers(config.lam2, n_layers, "lam2"), n_layers, "lam2")
        return cls([x * unit for x in lam1], [x * unit for x in lam2])

    def current(self) -> tuple[list[float], list[float]]:
        """``(lam1, lam2)`` for the next step, one value per layer."""
        return self.lam1, self.lam2

    def to_json(self) -> dict:
        """What a checkpoint stores (JSON floats round-trip exactly)."""
        return {"kind": self.KIND, "lam1": list(self.lam1), "lam2": list(self.lam2)}

    @classmethod
    def from_json(cls, d, n_layers: int) -> "PenaltyWeights":
        """Inverse of :meth:`to_json`; ``ValueError`` for anything else."""
        if not isinstance(d, dict) or d.get("kind") != cls.KIND or set(d) != {"kind", "lam1", "lam2"}:
            raise ValueError(f"penalty weights must be {{'kind': {cls.KIND!r}, 'lam1': [...], 'lam2': [...]}}, got {d!r}")
        for name in ("lam1", "lam2"):
            v = d[name]
            if not isinstance(v, list) or len(v) != n_layers or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
                raise ValueError(f"penalty weights {name} must be {n_layers} finite numbers, got {v!r}")
        return cls(list(d["lam1"]), list(d["lam2"]))


__all__ = ["PenaltyWeights", "broadcast_layers"]
