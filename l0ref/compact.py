"""Compaction: from a masked full model to the small dense model it equals (``docs/design.md`` section 5).

After training, the test-time gates (Eq. 10, 11) are numbers in [0, 1]; a gate that is
exactly 0 belongs to a pruned neuron.  Eq. 2 masks a layer's weights as

    W_hat = W * outer(tile(s, G), z)        U_hat = U * outer(tile(s, G), s)

so the rows of every gate block that belong to a unit with ``s_j = 0`` are zero, and so
are the columns of the inputs with ``z_i = 0`` and of the recurrent units with
``s_j = 0``.  Such a unit's preactivations are its biases alone, and nothing reads its
state: not its own layer (the ``U`` columns are zero), not the next layer (whose ``z``
is this ``s``) and not the softmax (which reads ``s_L * h_L``).  Compaction deletes those
rows and columns and keeps the rest of ``W_hat``, ``U_hat``: the surviving gate values
are *folded* into the weights, so the small model runs with all gates equal to one and
computes what the masked full model computes (equal to rounding: the sums lose only
terms that are exact zeros, but are added in another order).

Where each gate value goes (our choice; the paper does not spell compaction out):

- layer l's ``z`` (gate group l - 1) scales the kept columns of its input matrix;
- layer l's ``s`` (gate group l) scales the kept rows of every gate block of its input
  and recurrent matrices, and the kept columns of its recurrent matrices;
- biases are added after the mask (Eq. 2: ``a = S * (...) + b``), so they are only cut;
- the embedding is only cut (its gate, group 0, is layer 1's ``z``);
- the softmax weights' kept columns are scaled by ``s_L``; the softmax bias is kept whole.

Which axis of which cell parameter is which, each cell module says in its ``FOLD_AXES``:

- ``"rows"``: G gate blocks of n unit rows (G = the cell's ``BLOCKS``); cut to the kept
  units in every block and scaled by ``tile(s, G)``;
- ``"bias"``: the same rows, cut but not scaled;
- ``"in"``: the m input columns; cut to the kept inputs and scaled by ``z``;
- ``"hid"``: the n recurrent columns; cut to the kept units and scaled by ``s``;
- ``None``: not a neuron axis (the RHN's micro-steps); kept whole.

(The GRU's ``FOLD_AXES`` says why its reset gate is no exception; the RHN folds every
micro-step's ``R^k`` alike.)

**A layer whose every neuron is pruned** becomes a layer of hidden size 0 (its
parameters are arrays with a zero dimension, and it has no state).  The next layer then
has input size 0: its input projection contributes nothing, and it runs on its biases
and its own recurrence alone, exactly as the masked full model does with ``z = 0``.  If
the last layer is fully pruned, the softmax weights are ``(V, 0)`` and the output is the
softmax bias alone, the same log-probabilities at every step.  A fully pruned embedding
group gives an embedding of width 0 in the same way.  Nothing is removed beyond the
gated neurons: a layer of size 0 stays in the model, so ``cm.config`` always has as
many layers as the original.

Files (:func:`save`, :func:`load`): an ``.npz`` archive of plain arrays (``checkpoint.py``),
read with ``allow_pickle=False``.  Its entry ``__header__`` is a uint8 array holding
UTF-8 JSON: the format name and version, the compact and original configs (cell, sizes,
cell options), the model dtype and the kept indices of every group.  The parameters are
stored under the names of ``tree.walk`` (``emb``, ``layers.0.W``, ..., ``out_W``, ``out_b``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import os

import numpy as np

from . import checkpoint as ckpt
from . import models
from .cells import get_cell, layer_macs, layer_param_count
from .models import ModelConfig
from .tree import walk

FORMAT_NAME = "l0ref-compact"
FORMAT_VERSION = 1


@dataclass
class CompactModel:
    """A compacted model: a plain model whose gates are all one.

    ``config``   ModelConfig with the surviving sizes (same cell and cell_options);
    ``params``   ``emb (V, e')``, ``layers`` (the cell's own keys, compact sizes),
                 ``out_W (V, n_L')``, ``out_b (V,)``; no ``log_alpha``; contiguous
                 arrays in the model's dtype;
    ``kept``     one sorted int64 index array per gate group, into the original group;
    ``original`` the ModelConfig of the full model;
    ``meta``     JSON-able extras that :func:`save` stores, e.g. ``{"vocab": [...], "level": "word"}``.

    ``models.log_probs(cm.config, cm.params, tokens)`` (gates None) runs it.
    """

    config: ModelConfig
    params: dict
    kept: list
    original: ModelConfig
    meta: dict = field(default_factory=dict)  #: JSON-able extras saved with it (vocabulary, level)

    def log_probs(self, tokens, state0=None):
        """``models.log_probs`` of the compact model: (T, B, V) and the final states."""
        return models.log_probs(self.config, self.params, tokens, None, state0)

    def size_report(self) -> "SizeReport":
        return size_report(self)


def check_compaction_gates(config: ModelConfig, gates, dtype) -> list[np.ndarray]:
    """One gate vector per group, shape (size,), finite, in [0, 1], cast to ``dtype``."""
    sizes = config.group_sizes
    if len(gates) != len(sizes):
        raise ValueError(f"got {len(gates)} gate groups, the model has {len(sizes)} (embedding + one per layer)")
    out = []
    for l, (g, size) in enumerate(zip(gates, sizes)):
        g = np.asarray(g)
        if g.shape != (size,):
            raise ValueError(f"gate group {l} has shape {g.shape}; compaction needs one test-time gate "
                             f"vector (Eq. 10, 11) of shape ({size},) per group")
        g = g.astype(dtype)
        if not np.all(np.isfinite(g)):
            raise ValueError(f"gate group {l} contains NaN or inf")
        if np.any(g < 0) or np.any(g > 1):
            raise ValueError(f"gate group {l} has values in [{g.min()}, {g.max()}], outside [0, 1]")
        out.append(g)
    return out


def compact(config: ModelConfig, params: dict, gates=None) -> CompactModel:
    """Build the compact model that equals the masked full model (Eq. 2 with the gates of Eq. 10, 11).

    ``gates``: one vector per group, ``[(e,), (n_1,), ..., (n_L,)]``, each value in
    [0, 1]; None means ``models.inference_gates(params)``.  The gates are cast to
    the model's dtype first, and a neuron is kept iff its gate is then nonzero.
    Fully pruned groups give size-0 layers (see the module docstring).
    """
    cell = get_cell(config.cell)
    dtype = models.check_params(config, params)
    if gates is None:
        gates = models.inference_gates(params)
    g = check_compaction_gates(config, gates, dtype)
    kept = [np.flatnonzero(gl != 0).astype(np.int64) for gl in g]

    layers = []
    for l, p in enumerate(params["layers"]):
        # layer l + 1 (1-based) reads z = group l, s = group l + 1
        layers.append(_fold_layer(cell, p, g[l], g[l + 1], kept[l], kept[l + 1], dtype))
    k0, kL = kept[0], kept[-1]
    small = {
        "emb": np.ascontiguousarray(np.asarray(params["emb"])[:, k0], dtype),           # (V, e')
        "layers": layers,
        "out_W": np.ascontiguousarray(np.asarray(params["out_W"])[:, kL] * g[-1][kL], dtype),  # (V, n_L')
        "out_b": np.ascontiguousarray(params["out_b"], dtype),                           # (V,)
    }
    small_config = ModelConfig(config.cell, config.vocab_size, len(k0), tuple(len(k) for k in kept[1:]),
                               dict(config.cell_options), config.gate_families)
    return CompactModel(small_config, small, kept, config)


def _fold_layer(cell, p: dict, z, s, kz, ks, dtype) -> dict:
    """One layer's kept rows and columns of Eq. 2's ``W_hat``, ``U_hat`` (biases only cut)."""
    G = cell.BLOCKS
    n = s.shape[0]
    rows = (np.arange(G)[:, None] * n + ks[None, :]).reshape(-1)   # kept units in every block, (G*n',)
    S = np.tile(s[ks], G)                                           # (G*n',)
    select = {"rows": (rows, S), "bias": (rows, None), "in": (kz, z[kz]), "hid": (ks, s[ks])}
    out = {}
    for key in cell.PARAM_KEYS:
        a = np.asarray(p[key])
        axes = cell.FOLD_AXES[key]
        if a.ndim != len(axes):
            raise ValueError(f"cell {cell.NAME!r} parameter {key} has {a.ndim} axes, its folding rule {len(axes)}")
        for axis, kind in enumerate(axes):
            if kind is None:
                continue
            index, scale = select[kind]
            expected = {"rows": G * n, "bias": G * n, "in": z.shape[0], "hid": n}[kind]
            if a.shape[axis] != expected:
                raise ValueError(f"cell {cell.NAME!r} parameter {key} has {a.shape[axis]} entries on axis "
                                 f"{axis} ({kind}), expected {expected}")
            a = np.take(a, index, axis=axis)
            if scale is not None:
                shape = [1] * a.ndim
                shape[axis] = -1
                a = a * scale.reshape(shape)
        out[key] = np.ascontiguousarray(a, dtype)
    return out


def compact_state(cm: CompactModel, states) -> list:
    """The full model's per-layer states (the cell's form: an array (B, n) or a tuple of
    them) cut to the kept units, to continue a stream with the compact model."""
    if len(states) != cm.original.n_layers:
        raise ValueError(f"got {len(states)} layer states for {cm.original.n_layers} layers")
    out = []
    for state, k in zip(states, cm.kept[1:]):
        if isinstance(state, tuple):
            out.append(tuple(np.ascontiguousarray(np.asarray(part)[..., k]) for part in state))
        else:
            out.append(np.ascontiguousarray(np.asarray(state)[..., k]))
    return out


# --- The size report: parameters and multiply-adds before and after -------------------------

@dataclass
class Component:
    """One row of the report: parameters and multiply-adds per token, before and after."""

    name: str
    shape_before: str
    shape_after: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int


@dataclass
class SizeReport:
    """What compaction kept: per group ``(name, kept, total)`` and per component counts."""

    cell: str
    groups: list
    components: list

    @property
    def params_before(self) -> int:
        return sum(c.params_before for c in self.components)

    @property
    def params_after(self) -> int:
        return sum(c.params_after for c in self.components)

    @property
    def macs_before(self) -> int:
        return sum(c.macs_before for c in self.components)

    @property
    def macs_after(self) -> int:
        return sum(c.macs_after for c in self.components)


def _layer_counts(config: ModelConfig, m: int, n: int) -> tuple[int, int]:
    """(parameters, multiply-adds per token) of one layer with input m and hidden n
    (``cells.layer_param_count``, ``cells.layer_macs``: every gate block, every RHN micro-step)."""
    cell = get_cell(config.cell)
    return layer_param_count(cell, m, n, config.cell_options), sum(layer_macs(cell, m, n, config.cell_options))


def size_report(cm: CompactModel) -> SizeReport:
    """Counts before and after compaction.

    Parameters: every weight and bias (no ``log_alpha``).  Multiply-adds per token: the
    matrix-vector products of the dense model (all gate blocks), the embedding lookup
    counted as 0 and the softmax as ``V * n_L``; biases, nonlinearities and the mask
    products of the full model are not counted.
    """
    full, small = cm.original, cm.config
    V = full.vocab_size
    names = ["embedding"] + [f"layer {l + 1}" for l in range(full.n_layers)]
    groups = [(name, len(k), total) for name, k, total in zip(names, cm.kept, full.group_sizes)]
    comps = [Component("embedding", f"{V}x{full.emb_size}", f"{V}x{small.emb_size}",
                       V * full.emb_size, V * small.emb_size, 0, 0)]
    m_full, m_small = full.emb_size, small.emb_size
    for l, (n_full, n_small) in enumerate(zip(full.hidden_sizes, small.hidden_sizes)):
        pb, mb = _layer_counts(full, m_full, n_full)
        pa, ma = _layer_counts(small, m_small, n_small)
        comps.append(Component(f"layer {l + 1}", f"{m_full}->{n_full}", f"{m_small}->{n_small}", pb, pa, mb, ma))
        m_full, m_small = n_full, n_small
    comps.append(Component("softmax", f"{m_full}->{V}", f"{m_small}->{V}",
                           V * m_full + V, V * m_small + V, V * m_full, V * m_small))
    return SizeReport(full.cell, groups, comps)


def format_size_report(report) -> str:
    """A readable text table of a :class:`SizeReport` (or of a CompactModel's size report)."""
    if isinstance(report, CompactModel):
        report = size_report(report)

    def ratio(after, before):
        return f"{after / before:7.1%}" if before else "      -"

    lines = [f"compacted {report.cell} model", "",
             f"{'group':<12}{'kept':>8}{'total':>8}{'kept %':>9}"]
    for name, kept, total in report.groups:
        lines.append(f"{name:<12}{kept:>8}{total:>8}{ratio(kept, total):>9}")
    lines += ["", f"{'component':<12}{'before':>12}{'after':>12}{'params before':>15}{'params after':>14}"
                  f"{'MACs/token before':>19}{'MACs/token after':>18}"]
    for c in report.components:
        lines.append(f"{c.name:<12}{c.shape_before:>12}{c.shape_after:>12}{c.params_before:>15,}"
                     f"{c.params_after:>14,}{c.macs_before:>19,}{c.macs_after:>18,}")
    lines.append(f"{'total':<12}{'':>12}{'':>12}{report.params_before:>15,}{report.params_after:>14,}"
                 f"{report.macs_before:>19,}{report.macs_after:>18,}")
    lines += ["", f"parameters kept:      {ratio(report.params_after, report.params_before).strip()}",
              f"multiply-adds kept:   {ratio(report.macs_after, report.macs_before).strip()}"]
    return "\n".join(lines)


# --- Files ------------------------------------------------------------------------------

def _header(cm: CompactModel, dtype) -> dict:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": cm.config.to_dict(),
        "original": cm.original.to_dict(),
        "dtype": np.dtype(dtype).name,
        "kept": [[int(i) for i in k] for k in cm.kept],
        "meta": cm.meta,
    }


def _check_kept(kept, original: ModelConfig, small: ModelConfig) -> list[np.ndarray]:
    if len(kept) != len(original.group_sizes):
        raise ValueError(f"kept has {len(kept)} groups, the model has {len(original.group_sizes)}")
    out = []
    for l, (k, total, size) in enumerate(zip(kept, original.group_sizes, small.group_sizes)):
        k = np.asarray(k)
        if k.ndim != 1 or (k.size and not np.issubdtype(k.dtype, np.integer)):
            raise ValueError(f"kept indices of group {l} must be a 1-D integer array, got {k.dtype} {k.shape}")
        k = k.astype(np.int64)
        if k.size != size:
            raise ValueError(f"group {l} keeps {k.size} indices but its compact size is {size}")
        if k.size and (k[0] < 0 or k[-1] >= total or np.any(np.diff(k) <= 0)):
            raise ValueError(f"kept indices of group {l} must increase strictly within [0, {total})")
        out.append(k)
    return out


def save(path, cm: CompactModel) -> None:
    """Write ``cm`` to ``path`` (exactly that name: no ``.npz`` is appended).

    The file is a ``checkpoint.save_npz`` archive: plain arrays named as
    ``tree.walk`` gives them, and a JSON header with the format, both configs,
    the dtype, the kept indices and ``cm.meta`` (e.g. the vocabulary).  Atomic: a
    crash while saving leaves the previous file at ``path`` intact.
    """
    dtype = models.check_params(cm.config, cm.params, gates=False)
    _check_kept(cm.kept, cm.original, cm.config)
    arrays = dict(walk(cm.params))
    ckpt.save_npz(path, _header(cm, dtype), arrays)


def load(path) -> CompactModel:
    """Read a file written by :func:`save`.

    Raises ``ValueError`` saying what is wrong if the file is not an npz archive, is
    truncated or corrupt (a zip CRC mismatch included), has no valid header, is of
    another format or format version, lacks an array or has an unexpected one, or has
    arrays of the wrong shape, dtype or with NaN / inf.  A missing file raises
    ``FileNotFoundError``.
    """
    header, arrays = ckpt.load_npz(path, FORMAT_NAME, (FORMAT_VERSION,))
    path = os.fspath(path)
    try:
        small = ModelConfig.from_dict(header["config"])
        original = ModelConfig.from_dict(header["original"])
        dtype = np.dtype(header["dtype"])
        kept = header["kept"]
        meta = dict(header.get("meta", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path!r}: the header does not describe a model: {e!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{path!r}: the header's dtype {dtype} is not float32 or float64")
    if (small.cell, small.vocab_size, small.n_layers, small.cell_options) != \
            (original.cell, original.vocab_size, original.n_layers, original.cell_options):
        raise ValueError(f"{path!r}: compact config {small} does not match original config {original}")
    try:
        kept = _check_kept(kept, original, small)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path!r}: {e}") from None

    expected = _expected_shapes(small)
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise ValueError(f"{path!r} lacks the arrays {missing}")
    extra = sorted(set(arrays) - set(expected))
    if extra:
        raise ValueError(f"{path!r} has unexpected arrays {extra}")
    for name, shape in expected.items():
        a = arrays[name]
        if a.shape != shape:
            raise ValueError(f"{path!r}: array {name!r} has shape {a.shape}, expected {shape}")
        if a.dtype != dtype:
            raise ValueError(f"{path!r}: array {name!r} has dtype {a.dtype}, the header says {dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{path!r}: array {name!r} contains NaN or inf")

    cell = get_cell(small.cell)
    params = {
        "emb": arrays["emb"],
        "layers": [{k: arrays[f"layers.{l}.{k}"] for k in cell.PARAM_KEYS} for l in range(small.n_layers)],
        "out_W": arrays["out_W"],
        "out_b": arrays["out_b"],
    }
    return CompactModel(small, params, kept, original, meta)


def _expected_shapes(config: ModelConfig) -> dict:
    """Array name -> shape for a model of ``config`` (names as ``tree.walk`` gives them)."""
    V, m = config.vocab_size, config.emb_size
    shapes = {"emb": (V, m)}
    cell = get_cell(config.cell)
    for l, n in enumerate(config.hidden_sizes):
        for k, shape in cell.param_shapes(m, n, **config.cell_options).items():
            shapes[f"layers.{l}.{k}"] = tuple(shape)
        m = n
    shapes["out_W"] = (V, m)
    shapes["out_b"] = (V,)
    return shapes


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "CompactModel", "Component", "SizeReport",
           "compact", "compact_state", "check_compaction_gates", "size_report", "format_size_report", "save", "load"]
