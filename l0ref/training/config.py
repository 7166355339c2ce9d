"""What to train with: :class:`TrainConfig` (hyper-parameters, validated on creation)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

LAMBDA_UNIT = 0.08  #: Wen et al. Table 2: lambdas are multiples of 0.08 / N
OPTIMIZERS = ("sgd", "adam")
DTYPES = {"float32": np.float32, "float64": np.float64}
MAX_LAMBDA = 1e6          #: penalty multipliers above this prune everything at once
MAX_WEIGHT_DECAY = 1.0    #: an L2 coefficient of 1 or more erases the weights


@dataclass(frozen=True)
class TrainConfig:
    """How to train.  The defaults are the paper's PTB setting where it gives one (SGD,
    lr 20, clip 0.25, dropout 0.35 (keep 0.65), lambdas 1 x 0.08/N, log_alpha ~ N(1, 0.1),
    lr divided by 1.02 per epoch after epoch 35; section 4.1) and ours where it does not.
    ``l0ref train``'s quick demonstration overrides several of them (see ``cli.py``)."""

    epochs: int = 40
    batch_size: int = 20
    bptt: int = 35
    optimizer: str = "sgd"            #: "sgd" (with optional momentum) or "adam"
    lr: float = 20.0
    momentum: float = 0.0             #: SGD only
    lr_decay: float = 1.02            #: divide lr by this after each epoch >= lr_decay_start
    lr_decay_start: int = 35          #: first epoch (1-based) after which lr is divided
    clip: float = 0.25                #: global gradient norm; 0 = no clipping
    dropout: float = 0.35
    weight_decay: float = 1e-6        #: L2 on weight matrices (not biases, not log_alpha)
    lam1: tuple = (1.0,)              #: per layer, multiples of 0.08/N (one value = all layers)
    lam2: tuple = (1.0,)
    lam_vocab: float = 0.1            #: the embedding's expected nonzero entries (vocabulary gates only; see docs)
    lam_preact: tuple = (0.0,)        #: per layer: the preactivation gates' own count (extra push)
    lam_weights: tuple = (0.0,)       #: per layer: the weight gates' own count (extra push)
    log_alpha_init: float = 1.0       #: mean of the N(mean, std) init (Wen et al.: N(1, 0.1))
    log_alpha_std: float = 0.1
    log_alpha_init_extra: float = 3.0  #: mean init of the gate families beyond the neurons (open: little noise)
    log_alpha_lr_scale: float = 1.0   #: learning-rate multiplier for log_alpha
    init_range: float | None = None   #: Uniform(-r, r) init for all weights; None = PyTorch's
    adam_betas: tuple = (0.9, 0.999)
    adam_eps: float = 1e-8
    eval_batch_size: int = 10
    eval_every: int = 0               #: steps between evaluations; 0 = once per epoch
    seed: int = 0
    dtype: str = "float32"
    target_macs: float | None = None  #: a size target instead of lambdas: fraction of the multiply-adds
    target_params: float | None = None  #: ... or of the embedding and recurrent weights
    target_warmup: float = 0.3        #: fraction of the run over which the target is ramped in
    target_lr: float = 0.05           #: learning rate of the target's multipliers (gradient ascent)
    target_lam2: float = 20.0         #: initial quadratic multiplier of the target's Lagrangian
    finetune: float = 0.0             #: last fraction of the run: structure fixed, weights fine-tuned (step.py)
    dense_start: float = 0.0          #: first fraction of the run: every gate open, no penalty (step.py)

    def __post_init__(self):
        for name in ("lam1", "lam2", "lam_preact", "lam_weights", "adam_betas"):
            v = getattr(self, name)
            v = (v,) if np.ndim(v) == 0 else tuple(v)
            object.__setattr__(self, name, tuple(float(x) for x in v))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first impossible setting."""
        def positive_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

        for name in ("epochs", "batch_size", "bptt", "eval_batch_size", "lr_decay_start"):
            positive_int(name)
        if isinstance(self.eval_every, bool) or not isinstance(self.eval_every, (int, np.integer)) or self.eval_every < 0:
            raise ValueError(f"eval_every must be an integer >= 0, got {self.eval_every!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        finite = ("lr", "momentum", "lr_decay", "clip", "dropout", "weight_decay", "log_alpha_init", "log_alpha_init_extra",
                  "log_alpha_std", "log_alpha_lr_scale", "adam_eps")
        for name in finite:
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if self.lr_decay < 1:
            raise ValueError(f"lr_decay is a divisor and must be >= 1, got {self.lr_decay!r}")
        if self.clip < 0:
            raise ValueError(f"clip must be >= 0 (0 = no clipping), got {self.clip!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if not 0 <= self.weight_decay < MAX_WEIGHT_DECAY:
            raise ValueError(f"weight_decay must lie in [0, {MAX_WEIGHT_DECAY:g}) (an L2 coefficient; the default is "
                             f"1e-6), got {self.weight_decay!r}: larger values pull every weight to zero")
        if self.optimizer == "sgd" and self.lr * self.weight_decay >= 1:
            raise ValueError(f"lr x weight_decay = {self.lr * self.weight_decay:g} >= 1: each SGD step would flip "
                             f"the sign of every weight; lower one of them")
        if self.log_alpha_std < 0:
            raise ValueError(f"log_alpha_std must be >= 0, got {self.log_alpha_std!r}")
        if self.log_alpha_lr_scale < 0:
            raise ValueError(f"log_alpha_lr_scale must be >= 0, got {self.log_alpha_lr_scale!r}")
        if not self.adam_eps > 0:
            raise ValueError(f"adam_eps must be > 0, got {self.adam_eps!r}")
        if isinstance(self.lam_vocab, bool) or not isinstance(self.lam_vocab, (int, float)) or \
                not math.isfinite(self.lam_vocab) or not 0 <= self.lam_vocab <= MAX_LAMBDA:
            raise ValueError(f"lam_vocab must be finite and in [0, {MAX_LAMBDA:g}], got {self.lam_vocab!r}")
        for name in ("lam1", "lam2", "lam_preact", "lam_weights"):
            v = getattr(self, name)
            if not v:
                raise ValueError(f"{name} needs at least one value")
            for x in v:
                if not math.isfinite(x) or x < 0:
                    raise ValueError(f"{name} values must be finite and >= 0, got {v!r}")
                if x > MAX_LAMBDA:
                    raise ValueError(f"{name} = {x:g} (x 0.08/N) is beyond {MAX_LAMBDA:g}: such a penalty closes every "
                                     f"gate within the first steps and overflows float32; Wen et al. use 1 to 5")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}")
        if self.init_range is not None and not (math.isfinite(self.init_range) and self.init_range > 0):
            raise ValueError(f"init_range must be > 0 or None, got {self.init_range!r}")
        for name in ("target_macs", "target_params"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1):
                raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {v!r}")
        if self.target_macs is not None and self.target_params is not None:
            raise ValueError("give one size target, target_macs or target_params, not both")
        if not (isinstance(self.target_warmup, (int, float)) and 0 < self.target_warmup <= 1):
            raise ValueError(f"target_warmup must lie in (0, 1], got {self.target_warmup!r}")
        if not (isinstance(self.target_lr, (int, float)) and math.isfinite(self.target_lr) and self.target_lr > 0):
            raise ValueError(f"target_lr must be > 0, got {self.target_lr!r}")
        if not (isinstance(self.target_lam2, (int, float)) and math.isfinite(self.target_lam2) and
                self.target_lam2 >= 0):
            raise ValueError(f"target_lam2 must be >= 0, got {self.target_lam2!r}")
        if isinstance(self.finetune, bool) or not isinstance(self.finetune, (int, float)) or \
                not 0 <= self.finetune < 1:
            raise ValueError(f"finetune must be a fraction of the run in [0, 1), got {self.finetune!r}")
        if isinstance(self.dense_start, bool) or not isinstance(self.dense_start, (int, float)) or \
                not 0 <= self.dense_start < 1:
            raise ValueError(f"dense_start must be a fraction of the run in [0, 1), got {self.dense_start!r}")
        if self.dense_start > 0 and (self.target_macs is not None or self.target_params is not None):
            raise ValueError("a dense start does not combine with a size target (target_macs, target_params): the "
                             "target's ramp counts from the first step; give lambdas instead")
        if self.dense_start + self.finetune >= 1:
            raise ValueError(f"dense_start ({self.dense_start:g}) + finetune ({self.finetune:g}) must be < 1: "
                             f"no part of the run would learn the structure")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")

    def phases(self) -> str:
        """The parts of the run that do not prune, for the run's opening lines ("" if none)."""
        parts = [f"the first {self.dense_start:.0%} of the run unpruned"] if self.dense_start else []
        parts += [f"the last {self.finetune:.0%} fine-tuning the structure"] if self.finetune else []
        return "".join(f", {p}" for p in parts)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("lam1", "lam2", "lam_preact", "lam_weights", "adam_betas"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ValueError(f"a train config must be a dict, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown train config keys {sorted(unknown)}")
        return cls(**d)


__all__ = ["TrainConfig", "LAMBDA_UNIT", "OPTIMIZERS", "DTYPES"]
