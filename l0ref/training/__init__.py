"""Training a gated model with the expected-L0 penalty (Wen et al. sections 3-4).

The package, file by file: ``config.py`` (:class:`TrainConfig`, what to train with),
``weights.py`` (the penalty weights, training state), ``state.py`` (:class:`TrainState`),
``tasks.py`` (what is learned: the language model's or the classifier's data, loss and
evaluation),
``step.py`` (one update), ``optim.py`` (SGD, Adam, weight decay), ``evaluate.py``
(perplexity, live neurons), ``loop.py`` (epochs, progress lines, history) and
``checkpoints.py`` (saving and exact resume).

One training step (:func:`train_step`) on a window ``(inputs, targets)`` of shape (T, B)::

    u      = draw_uniforms(log_alpha, B, rng)           one draw per sequence and gate
    gates  = sample_gates(log_alpha, u)                  hard concrete samples (Eq. 8)
    loss   = forward(params, inputs, targets, gates, state, dropout, rng)   mean CE per token
    grads  = backward(...);  d log_alpha = log_alpha_grads(u, d gates)       (reparameterized)
    R, dR  = penalty(log_alpha, lam1, lam2)              Eq. 7 with Eq. 9 for P(gate != 0)
    g      = grads + dR;  g *= min(1, clip / ||g||)      global norm over *all* parameters
    g     += weight_decay * w        (weight matrices only)
    w     -= lr * g                  (SGD; or momentum / Adam)

and the recurrent state carries to the next window (truncated BPTT: the final states of
one window start the next, but no gradient flows across windows).

What the paper leaves open, and what we chose
---------------------------------------------
**The scale of lambda.**  Wen et al. (Table 2) give ``lambda`` in units of ``0.08 / N``,
``N`` the number of training examples, following Louizos et al., whose objective (their
Eq. 3) is the *mean* loss ``(1/N) sum_i L_i`` plus ``lambda * ||theta||_0``: the ``1/N``
sits on the data term, and the reference code of Louizos et al. divides its
regularizer by ``N`` accordingly.  We train on the mean cross-entropy per token, which is
that same mean over ``N`` = the number of tokens of the training split (each token is one
prediction, one example).  So a multiplier ``k`` (``--lam1 k``) means::

    total = mean_token_CE + (k * 0.08 / N) * R            (R of Eq. 7, per gate block)

or, multiplying through by ``N``, "summed CE over the training set + 0.08 k R": keeping a
weight must buy 0.08 k nats of training log-likelihood over the whole set.  The
minibatch mean CE is an unbiased estimate of the data-set mean, so adding the full
penalty at every step optimizes the right objective.  (Reading the paper's lambda as
applying to a *summed* loss and then dividing it by N again would make it ~1e6 times too
weak on PTB to prune anything, against Table 2.)  The penalty counts one gate block, as
``penalties/expected_l0.py`` does (the paper's Eq. 4 leaves G to the lambdas).

**Weight decay.**  The paper adds L2 regularization "following [24]" without details.
We decay the weight *matrices* (every parameter array with two or more axes: embedding,
W, U, softmax weights), not the biases (as is common) and never ``log_alpha`` (decaying
it would pull every gate toward ``log_alpha = 0``, i.e. toward half-open gates, which is a
different prior than the L0 penalty).  As in PyTorch's optimizers the decay term is added
after clipping, so clipping acts on the gradient of the loss and penalty alone.

**Clipping** uses the global norm over all gradients, ``log_alpha`` included (the paper
clips at 0.25 with NT-ASGD and lr 20).  **Learning rate**: plain SGD by default, with the
learning rate divided by ``lr_decay`` after every epoch from ``lr_decay_start`` on (the
paper's RHN schedule is 1.02 after epoch 35); Adam is offered as an option.  NT-ASGD's
averaging is not implemented.  ``log_alpha_lr_scale`` multiplies the learning rate of
the gates only (1 = the paper).

**Dropout** acts on the non-recurrent connections only (``models.language.forward``).  Sampled
gates are drawn once per sequence per window (a window is one minibatch step).

Reproducibility: one ``numpy.random.Generator`` (PCG64, from ``seed``) draws the initial
parameters, then every gate sample and dropout mask, in a fixed order; the data are read
in order.  A checkpoint stores that generator's state, the optimizer's moments and the
carried recurrent state, so that training k steps, saving, loading and continuing gives
bit for bit the parameters of training straight through.
"""

from .checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_checkpoint, save_checkpoint
from .config import DTYPES, LAMBDA_UNIT, OPTIMIZERS, TrainConfig
from .evaluate import evaluate, evaluate_classifier, live_neurons, expected_size, reference_perplexities
from .loop import Interrupted, Progress, describe, fit, record, status_line
from .memory import check_fits, estimate_bytes
from .state import TrainState, init_state
from .step import train_step
from .tasks import Classification, LanguageModeling
from .weights import PenaltyWeights, TargetController

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "DTYPES", "Interrupted", "LAMBDA_UNIT", "OPTIMIZERS", "Classification", "LanguageModeling", "evaluate_classifier", "check_fits", "estimate_bytes",
           "PenaltyWeights", "TargetController", "Progress", "TrainConfig", "TrainState", "describe", "evaluate", "fit", "init_state",
           "live_neurons", "load_checkpoint", "record", "reference_perplexities", "save_checkpoint", "status_line",
           "expected_size", "train_step"]
