"""Everything training needs to continue exactly where it stopped: :class:`TrainState`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import models
from .config import DTYPES, TrainConfig
from .optim import init_opt
from . import weights as weights_mod
from .weights import PenaltyWeights, TargetController


@dataclass
class TrainState:
    """The state of a run.

    ``params`` and ``opt`` are parameter trees (``tree.py``); ``opt`` holds the SGD
    momentum buffers (``{"momentum": tree}``, empty without momentum) or Adam's moments
    (``{"m": tree, "v": tree}``) and ``opt_t``, the number of updates made; ``dense_steps``
    of them trained the unpruned network first (``config.dense_start``), the gates not
    learning, so Adam's bias correction of the gates counts the updates after them.
    ``penalty_weights`` gives the lambdas of every step (``weights.py``).  ``hidden`` is
    the recurrent state carried into the next window (None at the start of an epoch).
    ``epoch`` counts finished epochs; ``position`` is the next window of the current one.
    """

    model_config: models.ModelConfig
    config: TrainConfig
    params: dict
    rng: np.random.Generator
    n_train_tokens: int
    penalty_weights: PenaltyWeights | TargetController
    lr: float
    opt: dict = field(default_factory=dict)
    opt_t: int = 0
    dense_steps: int = 0
    hidden: list | None = None
    step: int = 0
    epoch: int = 0
    position: int = 0
    tokens_seen: int = 0
    elapsed: float = 0.0                  # training seconds, summed over sessions
    history: list = field(default_factory=list)
    loss_sum: float = 0.0                 # train loss since the last history record
    loss_count: int = 0
    vocab: list | None = None             # tokens in id order, for evaluating new text
    level: str = "word"
    meta: dict = field(default_factory=dict)  # JSON-able notes kept in checkpoints (e.g. the corpus)
    fraction: float = 0.0                 # of the run done, set by the loop before each step (not saved)

    @property
    def dtype(self):
        return DTYPES[self.config.dtype]

    @property
    def fine_tuning(self) -> bool:
        """Whether the run is in its last ``config.finetune`` (by ``fraction``, as a size
        target's ramp counts it: ``loop.run_fraction``): structure fixed (``step.py``)."""
        f = self.config.finetune
        return f > 0 and self.fraction >= 1.0 - f

    @property
    def dense_warmup(self) -> bool:
        """Whether the run is in its first ``config.dense_start``: every gate open, no
        penalty, the gates not updated (``step.py``): the unpruned network is trained first."""
        return self.fraction < self.config.dense_start


def init_state(model_config: models.ModelConfig, config: TrainConfig, n_train_tokens: int,
               vocab: list | None = None, level: str = "word") -> TrainState:
    """A fresh state: parameters drawn from ``Generator(PCG64(seed))``, ``log_alpha`` from
    ``N(log_alpha_init, log_alpha_std)``, optimizer buffers at zero."""
    rng = np.random.default_rng(config.seed)
    params = models.init_params(model_config, rng, dtype=DTYPES[config.dtype], init_range=config.init_range,
                                log_alpha_mean=config.log_alpha_init, log_alpha_std=config.log_alpha_std,
                                log_alpha_extra=config.log_alpha_init_extra)
    weights = weights_mod.from_config(config, model_config.n_layers, int(n_train_tokens))
    if vocab is not None and len(vocab) != model_config.vocab_size:
        raise ValueError(f"vocabulary has {len(vocab)} tokens, the model {model_config.vocab_size}")
    return TrainState(model_config, config, params, rng, int(n_train_tokens), weights, float(config.lr),
                      opt=init_opt(config, params), vocab=None if vocab is None else list(vocab), level=level)


__all__ = ["TrainState", "init_state"]
