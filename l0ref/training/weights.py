"""The penalty and its weights as training state: fixed lambdas, or a size target.

The step asks ``state.penalty_weights.penalty(config, log_alpha, fraction)`` for the
term added to the loss and its gradient, then calls ``after_step``; a checkpoint stores
``to_json()`` and a resumed run continues from it (:func:`from_json`), never from the
config, so weights that change during training resume exactly.

- :class:`PenaltyWeights`: Eq. 7 with fixed per-layer lambdas, the config's multipliers
  times the unit of Wen et al. Table 2, ``0.08 / N`` with N the number of training tokens
  (the package docstring says why).
- :class:`TargetController`: ask for a size, not a lambda.  With ``s`` the expected size
  of the compact model as a fraction of the full one (``penalties/expected_size.py``:
  multiply-adds per token, or weights) and ``t`` the target, the term is the Lagrangian of
  FLOP (Wang, Wohlwend, Lei 2020) and CoFi (Xia, Zhong, Chen 2022)::

      lambda1 (s - t) + lambda2 (s - t)**2

  minimized by the parameters and *maximized* by the multipliers: after every step,
  ``lambda1 += lr (m - t) / t`` and ``lambda2 += lr ((m - t) / t)**2`` (gradient ascent on
  the constraint written relative to the target, ``m / t - 1``, so that a target of 0.07
  is approached as fast, relative to itself, as one of 0.5), so the
  pressure grows while the model is too large and eases, down to negative ``lambda1``
  that lets it regrow, while it is too small.  ``m`` is what the ascent measures: the
  realized fraction (the compact model's, from the test-time gates) once the target is
  reached, the smaller of it and ``s`` while the target is ramped in (see
  :meth:`TargetController.measured_fraction`).  ``lambda2`` starts at
  ``target_lam2`` (20), not 0: its term, ``2 lambda2 (s - t)``, is a restoring force
  proportional to the distance, which holds ``s`` on the ramp from the first step; from
  0 it would grow too slowly (by ``(m - t)**2``), and the linear multiplier alone winds up
  while the gates lag, then closes them all at once and overshoots (measured on the
  embedded corpus, target 0.3 of the multiply-adds: 0.14 with both multipliers from 0 and
  ``m = s``; 0.292 with these choices, ``docs/targets.md``).  The target is ramped linearly from 1 to
  ``t`` over the first ``warmup`` of the run (its fraction of the steps, or of the time
  budget, whichever is further).  The layers stay independent in the sense of Wen et
  al.: there are no per-layer lambdas to set; each gate's pressure is ``(lambda1 + 2
  lambda2 (s - t))`` times the multiply-adds (or weights) it controls, ``ds/dp`` of the
  closed form, so a neuron of a large matrix pays more than one of a small.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


from ..penalties import expected_size, full_size, penalty_all, per_layer, realized_size
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
    """Absolute per-layer ``lam1`` (input matrices) and ``lam2`` (recurrent matrices) of
    Eq. 7; with Lobacheva et al.'s gates also ``lam_vocab`` (the embedding's expected
    nonzero entries) and the per-layer ``lam_preact``, ``lam_weights`` (each family's own
    gate count; ``penalties.penalty_all``)."""

    lam1: list
    lam2: list
    lam_vocab: float = 0.0
    lam_preact: list | None = None
    lam_weights: list | None = None
    KIND = "fixed"
    DECAY_GATE_LR = True      #: the learning-rate decay applies to the gates as well

    def __post_init__(self):
        if len(self.lam1) != len(self.lam2):
            raise ValueError(f"lam1 has {len(self.lam1)} layers, lam2 {len(self.lam2)}")
        L = len(self.lam1)
        self.lam1 = per_layer(self.lam1, L, "lam1")
        self.lam2 = per_layer(self.lam2, L, "lam2")
        self.lam_vocab = per_layer([self.lam_vocab], 1, "lam_vocab")[0]
        self.lam_preact = per_layer([0.0] * L if self.lam_preact is None else self.lam_preact, L, "lam_preact")
        self.lam_weights = per_layer([0.0] * L if self.lam_weights is None else self.lam_weights, L, "lam_weights")

    @classmethod
    def from_config(cls, config, n_layers: int, n_train_tokens: int) -> "PenaltyWeights":
        """The config's multipliers (``lam1``, ``lam2``, ``lam_vocab``, ``lam_preact``,
        ``lam_weights``) times ``0.08 / n_train_tokens``."""
        if n_train_tokens < 1:
            raise ValueError(f"the number of training tokens must be >= 1, got {n_train_tokens}")
        unit = LAMBDA_UNIT / n_train_tokens

        def layers(name):
            values = per_layer(broadcast_layers(getattr(config, name), n_layers, name), n_layers, name)
            return [x * unit for x in values]

        return cls(layers("lam1"), layers("lam2"), config.lam_vocab * unit, layers("lam_preact"),
                   layers("lam_weights"))

    def current(self) -> tuple[list[float], list[float]]:
        """``(lam1, lam2)`` for the next step, one value per layer."""
        return self.lam1, self.lam2

    def penalty(self, model_config, log_alpha: dict, fraction: float = 0.0):
        """Eq. 7 (generalized to every gate family present) and its gradient in every
        group's ``log_alpha``, ``{family: [...]}``."""
        return penalty_all(model_config, log_alpha, self.lam1, self.lam2, self.lam_vocab, self.lam_preact,
                           self.lam_weights)

    def after_step(self, model_config, log_alphas, fraction: float) -> None:
        """Fixed weights: nothing changes."""

    def describe(self) -> str:
        return ""

    def record(self, model_config, log_alphas, fraction: float) -> dict:
        """What a history entry keeps of the penalty: nothing beyond its value."""
        return {}

    def to_json(self) -> dict:
        """What a checkpoint stores (JSON floats round-trip exactly)."""
        return {"kind": self.KIND, "lam1": list(self.lam1), "lam2": list(self.lam2), "lam_vocab": self.lam_vocab,
                "lam_preact": list(self.lam_preact), "lam_weights": list(self.lam_weights)}

    @classmethod
    def from_json(cls, d, n_layers: int) -> "PenaltyWeights":
        """Inverse of :meth:`to_json` (the keys after ``lam2`` are optional: a checkpoint of
        before Lobacheva et al.'s gates has none); ``ValueError`` for anything else."""
        optional = {"lam_vocab", "lam_preact", "lam_weights"}
        if not isinstance(d, dict) or d.get("kind") != cls.KIND or not {"kind", "lam1", "lam2"} <= set(d) or \
                not set(d) <= {"kind", "lam1", "lam2"} | optional:
            raise ValueError(f"penalty weights must be {{'kind': {cls.KIND!r}, 'lam1': [...], 'lam2': [...]}} "
                             f"(and optionally {sorted(optional)}), got {d!r}")
        for name in ("lam1", "lam2", "lam_preact", "lam_weights"):
            v = d.get(name, [0.0] * n_layers)
            if not isinstance(v, list) or len(v) != n_layers or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v):
                raise ValueError(f"penalty weights {name} must be {n_layers} finite numbers, got {v!r}")
        v = d.get("lam_vocab", 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"penalty weight lam_vocab must be a finite number, got {v!r}")
        return cls(list(d["lam1"]), list(d["lam2"]), v, d.get("lam_preact"), d.get("lam_weights"))


@dataclass
class TargetController:
    """The Lagrangian controller of a size target (see the module docstring)."""

    measure: str          #: "macs" (multiply-adds per token) or "params" (weights)
    target: float         #: the fraction of the full model's size to reach, in (0, 1)
    warmup: float         #: the fraction of the run over which the target is ramped in
    lr: float             #: learning rate of the multipliers' gradient ascent
    lam1: float = 0.0
    lam2: float = 0.0
    KIND = "target"
    #: the gates keep the initial learning rate: the controller holds the size to the last
    #: step, and gates frozen by the decay cannot follow it (embedded corpus, target 0.07:
    #: realized 0.0653 with the decay, the last units closed while the lr fell 1.3x per epoch)
    DECAY_GATE_LR = False

    def __post_init__(self):
        if self.measure not in ("macs", "params"):
            raise ValueError(f"a target measures 'macs' or 'params', got {self.measure!r}")
        for name, low, high in (("target", 0.0, 1.0), ("warmup", 0.0, 1.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low < v < high or
                                                                               (name == "warmup" and v == 1.0)):
                raise ValueError(f"the size {name} must lie in ({low:g}, {high:g}{']' if name == 'warmup' else ')'}, "
                                 f"got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the multipliers' learning rate must be > 0, got {self.lr!r}")
        for name in ("lam1", "lam2"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"multiplier {name} must be finite, got {getattr(self, name)!r}")
        if self.lam2 < 0:
            raise ValueError(f"multiplier lam2 must be >= 0 (it only grows), got {self.lam2!r}")

    def target_at(self, fraction: float) -> float:
        """The ramped target after ``fraction`` of the run: 1 -> ``target`` over ``warmup``."""
        return 1.0 - (1.0 - self.target) * min(1.0, max(0.0, fraction) / self.warmup)

    def expected_fraction(self, model_config, log_alphas):
        """``(s, ds/dlog_alpha)``: the expected size over the full size."""
        full = full_size(model_config, self.measure)
        value, grads = expected_size(model_config, log_alphas, self.measure)
        return value / full, [g / full for g in grads]

    def penalty(self, model_config, log_alpha: dict, fraction: float = 0.0):
        """``lam1 (s - t) + lam2 (s - t)**2`` and its gradient in every group's ``log_alpha``
        (``{"neurons": [...]}``: a size target is built for the neuron gates alone)."""
        log_alphas = neuron_groups(log_alpha)
        s, ds = self.expected_fraction(model_config, log_alphas)
        d = s - self.target_at(fraction)
        scale = self.lam1 + 2 * self.lam2 * d
        dtype = log_alphas[0].dtype
        return float(self.lam1 * d + self.lam2 * d * d), {"neurons": [(scale * g).astype(dtype) for g in ds]}

    def realized_fraction(self, model_config, log_alphas) -> float:
        """The size of the compact model that the test-time gates would give now, over the full size."""
        from ..gates import deterministic_gates
        gates = deterministic_gates(log_alphas)
        return realized_size(model_config, gates, self.measure) / full_size(model_config, self.measure)

    def measured_fraction(self, model_config, log_alphas, fraction: float) -> float:
        """What the multipliers' ascent reads: after the warm-up, the realized fraction (the
        compact model's, what the target is about); during it, the smaller of the realized
        and the expected fraction.  The expected one leads: a closing gate lowers it at
        once, the realized one only when its test-time value reaches zero, some hundreds of
        steps later.  While the target moves and the gates follow it, the realized fraction
        alone would wind the linear multiplier up until every gate closes at once; the
        smaller of the two does not (anti-windup)."""
        realized = self.realized_fraction(model_config, log_alphas)
        if fraction >= self.warmup:
            return realized
        return min(realized, self.expected_fraction(model_config, log_alphas)[0])

    def after_step(self, model_config, log_alphas, fraction: float) -> None:
        """Gradient ascent of the multipliers at the parameters just used."""
        log_alphas = neuron_groups(log_alphas)
        t = self.target_at(fraction)
        d = (self.measured_fraction(model_config, log_alphas, fraction) - t) / t     # relative distance
        self.lam1 += self.lr * d
        self.lam2 += self.lr * d * d

    def describe(self) -> str:
        return f"{self.measure} target {self.target:g}"

    def record(self, model_config, log_alphas, fraction: float) -> dict:
        """Target, expected fraction and multipliers, for the history and its plot."""
        log_alphas = neuron_groups(log_alphas)
        s, _ = self.expected_fraction(model_config, log_alphas)
        return {"target": self.target_at(fraction), "expected_fraction": s, "measure": self.measure,
                "realized_fraction": self.realized_fraction(model_config, log_alphas),
                "multipliers": [self.lam1, self.lam2]}

    def to_json(self) -> dict:
        return {"kind": self.KIND, "measure": self.measure, "target": self.target, "warmup": self.warmup,
                "lr": self.lr, "lam1": self.lam1, "lam2": self.lam2}

    @classmethod
    def from_json(cls, d, n_layers: int) -> "TargetController":
        keys = {"kind", "measure", "target", "warmup", "lr", "lam1", "lam2"}
        if not isinstance(d, dict) or d.get("kind") != cls.KIND or set(d) != keys:
            raise ValueError(f"penalty weights of kind 'target' need the keys {sorted(keys)}, got {d!r}")
        for k in keys - {"kind", "measure"}:
            if isinstance(d[k], bool) or not isinstance(d[k], (int, float)):
                raise ValueError(f"penalty weights {k} must be a number, got {d[k]!r}")
        return cls(d["measure"], d["target"], d["warmup"], d["lr"], d["lam1"], d["lam2"])


def neuron_groups(log_alpha) -> list:
    """The neuron groups of a ``log_alpha`` dict (or the list itself), refusing other
    families: a size target counts the compact model's dense sizes, which only the
    neuron gates set."""
    if not isinstance(log_alpha, dict):
        return log_alpha
    if set(log_alpha) != {"neurons"}:
        raise ValueError(f"a size target works with the neuron gates alone; this model also has "
                         f"{sorted(set(log_alpha) - {'neurons'})} gates (give lambdas instead)")
    return log_alpha["neurons"]


def from_config(config, n_layers: int, n_train_tokens: int):
    """The penalty a fresh run starts with: a target's controller, or Eq. 7's fixed lambdas."""
    for measure in ("macs", "params"):
        target = getattr(config, f"target_{measure}")
        if target is not None:
            return TargetController(measure, target, config.target_warmup, config.target_lr,
                                    lam2=config.target_lam2)
    return PenaltyWeights.from_config(config, n_layers, n_train_tokens)


def from_json(d, n_layers: int):
    """What a checkpoint stored: fixed weights or a controller, by ``kind``."""
    kinds = {PenaltyWeights.KIND: PenaltyWeights, TargetController.KIND: TargetController}
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in kinds:
        raise ValueError(f"penalty weights must be of kind {sorted(kinds)}, got {d!r}")
    return kinds[kind].from_json(d, n_layers)


__all__ = ["PenaltyWeights", "TargetController", "broadcast_layers", "from_config", "from_json"]
