"""Hypothesis strategies shared by the suite: shapes first, then arrays of those shapes."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SIZES = st.integers(1, 7)
STEPS = st.integers(1, 6)
BATCH = st.integers(1, 4)


def values(lo: float = -1.0, hi: float = 1.0):
    """Bounded finite float64 elements, no subnormals."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)


def arrays(shape, lo: float = -1.0, hi: float = 1.0):
    return hnp.arrays(np.float64, shape, elements=values(lo, hi))


def mask_values():
    """Gate values in [0, 1] with exact zeros and exact ones well represented."""
    return st.one_of(st.sampled_from([0.0, 1.0]), values(0.0, 1.0))


@st.composite
def masks(draw, batch: int, size: int, per_sequence=None):
    """A gate vector of shape (size,) or (batch, size), containing exact 0s and 1s."""
    if per_sequence is None:
        per_sequence = draw(st.booleans())
    shape = (batch, size) if per_sequence else (size,)
    return draw(hnp.arrays(np.float64, shape, elements=mask_values()))


@st.composite
def cell_problem(draw, cell, hidden_size=None, per_sequence=None, **init_options):
    """A random instance of ``cell``: parameters, input, masks, initial state, loss weights.

    Parameters are drawn in [-k, k] with k = 1/sqrt(n), the range PyTorch initializes
    recurrent cells in (so k = 1 for a single unit), and the input in [-2, 2].  Wider
    weights push a deep RHN into a chaotic regime with gradients in the thousands,
    where no finite difference in float64 resolves 1e-6.  ``per_sequence``
    fixes the masks' form, (B, size) or (size,); None draws it.  The RHN's
    recurrence depth is drawn in 1..4 unless ``depth`` is given.  Returns a dict
    with keys ``params, x, z, s, state0, d_out, d_state`` (state as the cell expects it)
    and, for a cell with Lobacheva et al.'s gates (``preact_size``), ``g`` (the
    preactivation gates, in the masks' form) and ``weight_masks`` (one per weight of
    each of its ``MATRIX_KEYS``, or None: drawn either way); both None otherwise.
    """
    T, B, m = draw(STEPS), draw(BATCH), draw(SIZES)
    n = draw(SIZES) if hidden_size is None else hidden_size
    if cell.NAME == "rhn" and "depth" not in init_options:
        init_options = dict(init_options, depth=draw(st.integers(1, 4)))
    seed = draw(st.integers(0, 2**32 - 1))
    shapes = {k: v.shape for k, v in cell.init_params(m, n, np.random.default_rng(seed), **init_options).items()}
    k = 1.0 / np.sqrt(n)
    params = {key: draw(arrays(shape, -k, k)) for key, shape in shapes.items()}
    x = draw(arrays((T, B, m), -2.0, 2.0))
    if per_sequence is None:
        per_sequence = draw(st.booleans())
    z = draw(masks(B, m, per_sequence))
    s = draw(masks(B, n, per_sequence))
    template = cell.zero_state(B, n, np.float64)
    if isinstance(template, tuple):
        state0 = tuple(draw(arrays(t.shape)) for t in template)
    else:
        state0 = draw(arrays(template.shape))
    g, weight_masks = None, None
    if hasattr(cell, "preact_size"):
        options = {k: v for k, v in init_options.items() if k in cell.OPTIONS}
        g = draw(masks(B, cell.preact_size(n, **options), per_sequence))
        if draw(st.booleans()):
            weight_masks = {key: draw(hnp.arrays(np.float64, shapes[key], elements=mask_values()))
                            for key in cell.MATRIX_KEYS}
    rng = np.random.default_rng(seed)
    d_out = rng.normal(size=(T, B, n))
    d_state = (tuple(rng.normal(size=t.shape) for t in template) if isinstance(template, tuple)
               else rng.normal(size=template.shape))
    return dict(params=params, x=x, z=z, s=s, state0=state0, d_out=d_out, d_state=d_state, g=g,
                weight_masks=weight_masks)


# --- Hard concrete gates, gate groups, the penalty -----------------------------------------
# (Strategies for tests/test_hard_concrete.py, test_gates.py, test_penalty.py, test_lstm.py.)

from l0ref import hard_concrete as _hc  # noqa: E402  (appended section)

#: Distance kept from the hard sigmoid's kinks at 0 and 1 (in the stretched value) by the
#: draws that a finite-difference check runs on: the central difference moves the
#: stretched value by at most ~2e-4 * 0.45, far less than this.
KINK_MARGIN = 1e-3


def stretched_value(log_alpha, u):
    """The stretched binary concrete ``gamma + (zeta - gamma) * s`` before the clamp,
    computed independently of l0ref in float64 (used to filter draws by region)."""
    la, u = np.asarray(log_alpha, np.float64), np.asarray(u, np.float64)
    s = 1.0 / (1.0 + np.exp(-(np.log(u) - np.log1p(-u) + la) / _hc.BETA))
    return _hc.GAMMA + (_hc.ZETA - _hc.GAMMA) * s


def in_region(t, region: str, margin: float = KINK_MARGIN) -> bool:
    """``interior``: margin < t < 1 - margin; ``clamped``: t < -margin or t > 1 + margin."""
    if region == "interior":
        return bool(margin < t < 1 - margin)
    if region == "clamped":
        return bool(t < -margin or t > 1 + margin)
    raise ValueError(f"unknown region {region!r}")


def uniform_values():
    """Uniform draws strictly inside (0, 1) and inside the clamp [EPS, 1 - EPS] of l0ref."""
    return st.floats(1e-4, 1 - 1e-4, allow_nan=False, allow_subnormal=False, width=64)


@st.composite
def gate_pairs(draw, region: str = "interior", max_size: int = 5, lo: float = -4.0, hi: float = 4.0):
    """Equal-shape float64 arrays ``(log_alpha, u)`` whose stretched values all lie in
    ``region`` (see :func:`in_region`), each pair drawn and filtered on its own."""
    k = draw(st.integers(1, max_size))
    pair = st.tuples(values(lo, hi), uniform_values()).filter(
        lambda p: in_region(stretched_value(*p), region))
    pairs = draw(st.lists(pair, min_size=k, max_size=k))
    la, u = (np.array(c, dtype=np.float64) for c in zip(*pairs))
    return la, u


#: Targets for the stretched value, all at least 0.005 inside (gamma, zeta) and at least
#: 0.01 away from the kinks: interior gates, gates clamped at exactly 0, at exactly 1.
STRETCH_TARGETS = {
    "interior": (0.01, 0.99),
    "zero": (_hc.GAMMA + 0.005, -0.01),
    "one": (1.01, _hc.ZETA - 0.005),
}


@st.composite
def uniforms_for(draw, log_alpha: np.ndarray, batch: int, regions=("interior",)):
    """Uniforms (batch, size) whose hard concrete samples at ``log_alpha`` land in ``regions``.

    Each gate draws a region and a target stretched value inside it, and the uniform
    is obtained by inverting Eq. 8: ``logit(u) = beta * logit(s) - log_alpha``.  With
    ``|log_alpha| <= 4`` the uniforms stay well inside the clamp [EPS, 1 - EPS].
    """
    size = log_alpha.shape[0]
    keys = [draw(st.sampled_from(regions)) for _ in range(batch * size)]
    t = np.array([draw(values(*STRETCH_TARGETS[k])) for k in keys]).reshape(batch, size)
    s = (t - _hc.GAMMA) / (_hc.ZETA - _hc.GAMMA)
    logit_u = _hc.BETA * (np.log(s) - np.log1p(-s)) - log_alpha
    return 1.0 / (1.0 + np.exp(-logit_u))


@st.composite
def penalty_problem(draw, max_layers: int = 3, max_size: int = 6, lo: float = -4.0, hi: float = 4.0):
    """A stack's ``log_alpha`` groups (L + 1 vectors, sizes 1..max_size) and per-layer
    ``lam1, lam2`` (lists of L values in [0, 2])."""
    L = draw(st.integers(1, max_layers))
    sizes = draw(st.lists(st.integers(1, max_size), min_size=L + 1, max_size=L + 1))
    log_alphas = [draw(arrays((k,), lo, hi)) for k in sizes]
    lam1 = draw(st.lists(values(0.0, 2.0), min_size=L, max_size=L))
    lam2 = draw(st.lists(values(0.0, 2.0), min_size=L, max_size=L))
    return log_alphas, lam1, lam2


@st.composite
def stack_problem(draw, cell, n_layers: int, max_size: int = 4, max_steps: int = 4, max_batch: int = 3):
    """A stack of ``n_layers`` cells: sizes [m, n_1, ..., n_L], parameters in [-1, 1] per
    layer, input (T, B, m) in [-2, 2], initial states in [-1, 1], and a fixed random
    projection ``d_out`` (T, B, n_L) of the output for the loss."""
    T, B = draw(st.integers(1, max_steps)), draw(st.integers(1, max_batch))
    sizes = draw(st.lists(st.integers(1, max_size), min_size=n_layers + 1, max_size=n_layers + 1))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    params, state0 = [], []
    for m, n in zip(sizes[:-1], sizes[1:]):
        shapes = {k: v.shape for k, v in cell.init_params(m, n, rng).items()}
        params.append({k: draw(arrays(shape)) for k, shape in shapes.items()})
        template = cell.zero_state(B, n, np.float64)
        parts = template if isinstance(template, tuple) else (template,)
        drawn = tuple(draw(arrays(p.shape)) for p in parts)
        state0.append(drawn if isinstance(template, tuple) else drawn[0])
    x = draw(arrays((T, B, sizes[0]), -2.0, 2.0))
    d_out = rng.normal(size=(T, B, sizes[-1]))
    return dict(sizes=sizes, params=params, x=x, state0=state0, d_out=d_out, T=T, B=B)


# --- Language models (tests/test_model.py, tests/test_compact.py) --------------------------

from l0ref import models as _model  # noqa: E402  (appended section)
from l0ref import tree as _tree  # noqa: E402

#: Cell options of the model-level tests, drawn per cell: a shallow RHN keeps them fast.
LM_CELL_OPTIONS = {"rhn": st.fixed_dictionaries({"depth": st.integers(1, 2)})}


#: Lobacheva et al.'s gate families, each drawn in or out by ``families="any"``.
EXTRA_FAMILIES = ("preact", "weights", "vocab")


@st.composite
def gate_families(draw, families=("neurons",)):
    """``families`` itself, or with ``"any"`` the neuron gates plus a drawn subset of the others."""
    if families != "any":
        return tuple(families)
    return ("neurons",) + tuple(f for f in EXTRA_FAMILIES if draw(st.booleans()))


@st.composite
def lm_configs(draw, cell_name: str, max_vocab: int = 5, max_size: int = 3, max_layers: int = 2,
               families=("neurons",), max_classes: int | None = None):
    """A small ModelConfig: V in [2, max_vocab], 1..max_layers layers, sizes in [1, max_size],
    the gate families of :func:`gate_families`; a classifier of 2..max_classes classes
    when ``max_classes`` is given."""
    V = draw(st.integers(2, max_vocab))
    L = draw(st.integers(1, max_layers))
    e = draw(st.integers(1, max_size))
    hidden = draw(st.lists(st.integers(1, max_size), min_size=L, max_size=L))
    options = draw(LM_CELL_OPTIONS.get(cell_name, st.just({})))
    n_classes = None if max_classes is None else draw(st.integers(2, max_classes))
    return _model.ModelConfig(cell_name, V, e, tuple(hidden), options, draw(gate_families(families)), n_classes)


@st.composite
def lm_params(draw, config, lo: float = -1.0, hi: float = 1.0):
    """Model parameters of ``config`` (log_alpha included), every array drawn in [lo, hi], float64."""
    template = _model.init_params(config, np.random.default_rng(0), np.float64, init_range=1.0)
    return _tree.map_tree(lambda a: draw(arrays(a.shape, lo, hi)), template)


def token_arrays(shape, vocab_size: int):
    return hnp.arrays(np.int64, shape, elements=st.integers(0, vocab_size - 1))


@st.composite
def lm_problem(draw, cell_name: str, max_steps: int = 3, max_batch: int = 3, per_sequence=None, **config_kw):
    """A language-model instance: config, params, tokens and targets (T, B), and one gate
    array per group with exact 0s and 1s, each (size,) or (B, size) (``per_sequence``
    None draws that per group, so both forms and their mixtures occur).  ``gates`` is the
    list of neuron gates for a neurons-only config (the default), else ``{family: [...]}``
    (``families="any"`` in ``config_kw`` draws the families), weight gates of their
    matrices' shapes."""
    config = draw(lm_configs(cell_name, **config_kw))
    params = draw(lm_params(config))
    T, B = draw(st.integers(1, max_steps)), draw(st.integers(1, max_batch))
    tokens = draw(token_arrays((T, B), config.vocab_size))
    targets = draw(token_arrays((T, B), config.vocab_size))
    gates = draw(model_gates(config, B, per_sequence))
    return dict(config=config, params=params, tokens=tokens, targets=targets, gates=gates, T=T, B=B)


@st.composite
def classifier_problem(draw, cell_name: str, max_steps: int = 4, max_batch: int = 3, max_classes: int = 4,
                       per_sequence=None, **config_kw):
    """A classifier instance: config (``n_classes`` drawn), params, right-padded tokens
    (T, B) with their ``lengths`` (B,) in [1, T] (one of them T), ``labels`` (B,), and
    gates as :func:`lm_problem` draws them."""
    config = draw(lm_configs(cell_name, max_classes=max_classes, **config_kw))
    params = draw(lm_params(config))
    T, B = draw(st.integers(1, max_steps)), draw(st.integers(1, max_batch))
    tokens = draw(token_arrays((T, B), config.vocab_size))
    lengths = np.array(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)), np.int64)
    lengths[draw(st.integers(0, B - 1))] = T
    labels = np.array(draw(st.lists(st.integers(0, config.n_classes - 1), min_size=B, max_size=B)), np.int64)
    gates = draw(model_gates(config, B, per_sequence))
    return dict(config=config, params=params, tokens=tokens, lengths=lengths, labels=labels, gates=gates, T=T, B=B)


@st.composite
def model_gates(draw, config, B: int, per_sequence=None):
    """One gate array per group of every family of ``config``, with exact 0s and 1s: each
    (size,) or (B, size) (``per_sequence``), weight gates of their matrices' shapes; the
    list of neuron gates for a neurons-only config, else ``{family: [...]}``."""
    from l0ref import gates as _gates
    gates = {}
    for family in config.gate_families:
        arrays_ = []
        for group in _gates.get_family(family).groups(config):
            if group.drawn == _gates.PER_MINIBATCH:
                arrays_.append(draw(hnp.arrays(np.float64, group.shape, elements=mask_values())))
            else:
                arrays_.append(draw(masks(B, group.shape[0], per_sequence)))
        gates[family] = arrays_
    return gates["neurons"] if config.gate_families == ("neurons",) else gates
