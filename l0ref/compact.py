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

**Lobacheva et al.'s gates** (``docs/design.md`` section 6) fold in as well:

- a weight gate multiplies its weight before anything is cut (``W * M_W``), so a weight
  whose test-time gate is 0 is an exact zero of the kept matrix; a matrix whose zeros
  make its CSR form (values, int32 column indices, row pointers) smaller than the dense
  one is also stored as CSR (:attr:`CompactModel.structure`, ``"sparse"``) -- the dense
  array stays the reference;
- a preactivation gate scales its row of every matrix like ``tile(s, G)`` (the GRU's also
  its ``b_hn``: ``PREACT_SCALED_BIASES``), so at 0 the row is exact zeros and the gate of
  that unit is the constant of its biases, which the plain cell forward then computes
  with no special case; ``structure[l]["preact"]`` keeps the compact layer's gate values,
  whose zeros are the *constant gates* (rows no product needs: ``macs_after`` leaves them
  out);
- a unit whose every gate is constant but whose ``s`` is nonzero is *kept*: its state
  no longer depends on the input, but it still depends on the initial state (a carried
  stream) and on time, and other units read it through their recurrent columns and the
  next layer, so folding it into biases would not be exact.  It costs no product row,
  only its elementwise state update;
- a vocabulary gate scales its word's embedding row (0: the zero vector; the word
  stays in the vocabulary and in the softmax).

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
from .cells import get_cell
from .fast.sparse import csr, csr_is_smaller
from .models import ModelConfig
from .tree import walk

FORMAT_NAME = "l0ref-compact"
FORMAT_VERSION = 2     #: 2 adds the structure of Lobacheva et al.'s gates (constant gates, CSR matrices)
READ_VERSIONS = (1, 2)


@dataclass
class CompactModel:
    """A compacted model: a plain model whose gates are all one.

    ``config``   ModelConfig with the surviving sizes (same cell and cell_options);
    ``params``   ``emb (V, e')``, ``layers`` (the cell's own keys, compact sizes),
                 ``out_W (V, n_L')``, ``out_b (V,)``; no ``log_alpha``; contiguous
                 arrays in the model's dtype;
    ``kept``     one sorted int64 index array per gate group, into the original group;
    ``original`` the ModelConfig of the full model;
    ``meta``     JSON-able extras that :func:`save` stores, e.g. ``{"vocab": [...], "level": "word"}``;
    ``structure`` one dict per layer: ``"preact"``, the compact layer's preactivation gate
                 values (None without such gates; zeros are constant gates), and
                 ``"sparse"``, the matrices also held as CSR, ``{key: (data, indices, indptr)}``
                 (the recurrent matrix of the RHN as its (L 2n, n) stack of rows).

    ``models.log_probs(cm.config, cm.params, tokens)`` (gates None) runs it.
    """

    config: ModelConfig
    params: dict
    kept: list
    original: ModelConfig
    meta: dict = field(default_factory=dict)  #: JSON-able extras saved with it (vocabulary, level)
    structure: list | None = None             #: per layer: constant gates and CSR matrices (see above)

    def __post_init__(self):
        if self.structure is None:
            self.structure = [{"preact": None, "sparse": {}} for _ in range(self.config.n_layers)]

    def log_probs(self, tokens, state0=None):
        """``models.log_probs`` of the compact model: (T, B, V) and the final states."""
        return models.log_probs(self.config, self.params, tokens, None, state0)

    def size_report(self):
        """``sizes.size_report(self)``: parameters and multiply-adds before and after."""
        from .sizes import size_report
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


def check_family_gates(config: ModelConfig, gates: dict, dtype) -> dict:
    """Lobacheva et al.'s test-time gates of a compaction: ``{family: [array per group]}``,
    each of its group's shape, finite, in [0, 1]; a family left out is all ones."""
    from . import gates as gates_mod
    unknown = sorted(set(gates) - set(config.gate_families))
    if unknown:
        raise ValueError(f"gates of families {unknown}, the model has {list(config.gate_families)}")
    out = {}
    for family in config.gate_families:
        if family == "neurons" or gates.get(family) is None:
            continue
        groups = gates_mod.get_family(family).groups(config)
        if len(gates[family]) != len(groups):
            raise ValueError(f"got {len(gates[family])} {family} gate groups, the model has {len(groups)}")
        arrays = []
        for group, a in zip(groups, gates[family]):
            a = np.asarray(a)
            if a.shape != group.shape:
                raise ValueError(f"{family} gate group {group.index} ({group.name}) has shape {a.shape}; compaction "
                                 f"needs its test-time gates, shape {group.shape}")
            a = a.astype(dtype)
            if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
                raise ValueError(f"{family} gate group {group.index} ({group.name}) has values outside [0, 1] or NaN")
            arrays.append(a)
        out[family] = arrays
    return out


def compact(config: ModelConfig, params: dict, gates=None) -> CompactModel:
    """Build the compact model that equals the masked full model (Eq. 2 with the gates of Eq. 10, 11).

    ``gates``: ``{family: [array per group]}`` (``models.eval_gates``; a family left out is
    all ones) or the neuron gates alone, one vector per group, ``[(e,), (n_1,), ...,
    (n_L,)]``; every value in [0, 1]; None means ``models.eval_gates(params)``.  The gates
    are cast to the model's dtype first, and a neuron is kept iff its gate is then
    nonzero.  Fully pruned groups give size-0 layers; Lobacheva et al.'s gates fold in as
    the module docstring says.
    """
    cell = get_cell(config.cell)
    dtype = models.check_params(config, params)
    if gates is None:
        gates = models.eval_gates(params)
    gates = gates if isinstance(gates, dict) else {"neurons": gates}
    if "neurons" not in gates:
        raise ValueError("compaction needs the neuron gates (gates['neurons'])")
    g = check_compaction_gates(config, gates["neurons"], dtype)
    lob = check_family_gates(config, gates, dtype)
    kept = [np.flatnonzero(gl != 0).astype(np.int64) for gl in g]

    layers, structure = [], []
    keys = getattr(cell, "MATRIX_KEYS", ())
    for l, p in enumerate(params["layers"]):
        # layer l + 1 (1-based) reads z = group l, s = group l + 1
        p = dict(p)
        if "weights" in lob:
            for k, key in enumerate(keys):
                p[key] = np.asarray(p[key]) * lob["weights"][l * len(keys) + k]
        preact = lob["preact"][l] if "preact" in lob else None
        layer, small_preact = _fold_layer(cell, p, g[l], g[l + 1], kept[l], kept[l + 1], dtype, preact)
        layers.append(layer)
        structure.append({"preact": small_preact,
                          "sparse": _sparse_forms(cell, layer) if "weights" in lob else {}})
    k0, kL = kept[0], kept[-1]
    emb = np.asarray(params["emb"])[:, k0]
    if "vocab" in lob:
        emb = emb * lob["vocab"][0][:, None]                                          # v_w * emb[w]
    small = {
        "emb": np.ascontiguousarray(emb, dtype),                                       # (V, e')
        "layers": layers,
        "out_W": np.ascontiguousarray(np.asarray(params["out_W"])[:, kL] * g[-1][kL], dtype),  # (V or C, n_L')
        "out_b": np.ascontiguousarray(params["out_b"], dtype),                           # (V or C,)
    }
    small_config = ModelConfig(config.cell, config.vocab_size, len(k0), tuple(len(k) for k in kept[1:]),
                               dict(config.cell_options), config.gate_families, config.n_classes)
    return CompactModel(small_config, small, kept, config, structure=structure)


def _fold_layer(cell, p: dict, z, s, kz, ks, dtype, preact=None):
    """One layer's kept rows and columns of Eq. 2's ``W_hat``, ``U_hat`` (biases only cut),
    the preactivation gates ``preact`` (the cell's ``g``, or None) folded into the rows:
    ``(params, the kept units' preactivation gates or None)``."""
    G = cell.BLOCKS
    n = s.shape[0]
    rows = (np.arange(G)[:, None] * n + ks[None, :]).reshape(-1)   # kept units in every block, (G*n',)
    S = np.tile(s[ks], G)                                           # (G*n',)
    select = {"rows": (rows, S), "bias": (rows, None), "in": (kz, z[kz]), "hid": (ks, s[ks])}
    out = {}
    gates = None
    if preact is not None:                                          # (steps, G*n'): one row per RHN micro-step
        preact = np.asarray(preact, dtype)
        gates = preact.reshape(preact.size // (G * n) if G * n else 1, G * n)[:, rows]
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
        if gates is not None:
            a = _fold_preact(cell, key, axes, a, gates)
        out[key] = np.ascontiguousarray(a, dtype)
    return out, (None if gates is None else np.ascontiguousarray(gates.reshape(-1)))


def _fold_preact(cell, key: str, axes: tuple, a: np.ndarray, gates: np.ndarray) -> np.ndarray:
    """Scale the rows of parameter ``key`` by their preactivation gates ``gates`` (steps,
    G*n'): a matrix's "rows" axis always (micro-step k's gates where a None axis runs
    over the RHN's micro-steps, the first micro-step's for W); a bias only in the blocks
    the cell's ``PREACT_SCALED_BIASES`` names (the GRU's ``b_hn``)."""
    if "rows" in axes:
        axis = axes.index("rows")
        g = gates if axes[0] is None else gates[0]
        return a * g.reshape(g.shape + (1,) * (a.ndim - axis - 1))
    blocks = getattr(cell, "PREACT_SCALED_BIASES", {}).get(key, ())
    if blocks:
        a = a.copy()
        k = a.shape[-1] // cell.BLOCKS
        for blk in blocks:
            a[..., blk * k:(blk + 1) * k] *= gates[0][blk * k:(blk + 1) * k]
    return a


def _sparse_forms(cell, layer: dict) -> dict:
    """The CSR form ``(data, indices int32, indptr int64)`` of each weight-gated matrix of a
    compact layer whose CSR form takes fewer bytes than the dense one (a recurrent matrix
    with a leading micro-step axis as its stack of rows)."""
    out = {}
    for key in cell.MATRIX_KEYS:
        M = _rows_of(layer[key])
        if csr_is_smaller(M):
            out[key] = csr(M)
    return out


def _rows_of(a: np.ndarray) -> np.ndarray:
    """A matrix, or a stack of them (the RHN's R), as one matrix of rows (zero sizes allowed)."""
    return a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1])


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
        "structure": [{"preact": st["preact"] is not None, "sparse": sorted(st["sparse"])} for st in cm.structure],
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
    for l, st in enumerate(cm.structure):
        if st["preact"] is not None:
            arrays[f"structure.{l}.preact"] = np.asarray(st["preact"], dtype)
        for key, (data, indices, indptr) in st["sparse"].items():
            del arrays[f"layers.{l}.{key}"]                          # stored as CSR, rebuilt on loading
            arrays.update({f"layers.{l}.{key}.data": data, f"layers.{l}.{key}.indices": indices,
                           f"layers.{l}.{key}.indptr": indptr})
    ckpt.save_npz(path, _header(cm, dtype), arrays)


def load(path) -> CompactModel:
    """Read a file written by :func:`save`.

    Raises ``ValueError`` saying what is wrong if the file is not an npz archive, is
    truncated or corrupt (a zip CRC mismatch included), has no valid header, is of
    another format or format version, lacks an array or has an unexpected one, or has
    arrays of the wrong shape, dtype or with NaN / inf.  A missing file raises
    ``FileNotFoundError``.
    """
    header, arrays = ckpt.load_npz(path, FORMAT_NAME, READ_VERSIONS)
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
    if (small.cell, small.vocab_size, small.n_layers, small.cell_options, small.n_classes) != \
            (original.cell, original.vocab_size, original.n_layers, original.cell_options, original.n_classes):
        raise ValueError(f"{path!r}: compact config {small} does not match original config {original}")
    try:
        kept = _check_kept(kept, original, small)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path!r}: {e}") from None

    expected = _expected_shapes(small)
    structure = _load_structure(path, header, arrays, small, expected, dtype)
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
    return CompactModel(small, params, kept, original, meta, structure)


def _load_structure(path, header, arrays: dict, small: ModelConfig, expected: dict, dtype) -> list:
    """The per-layer structure of a version-2 file (none in version 1), its CSR matrices
    rebuilt dense into ``arrays`` (and checked against their shapes)."""
    cell = get_cell(small.cell)
    st = header.get("structure")
    if st is None:
        return [{"preact": None, "sparse": {}} for _ in range(small.n_layers)]
    if not isinstance(st, list) or len(st) != small.n_layers or not all(
            isinstance(d, dict) and set(d) == {"preact", "sparse"} and isinstance(d["preact"], bool)
            and isinstance(d["sparse"], list) and set(d["sparse"]) <= set(getattr(cell, "MATRIX_KEYS", ()))
            for d in st):
        raise ValueError(f"{path!r}: the header's structure is not one {{'preact': bool, 'sparse': [matrix keys]}} "
                         f"per layer: {st!r}")
    out = []
    for l, d in enumerate(st):
        n = small.hidden_sizes[l]
        preact = None
        if d["preact"]:
            name = f"structure.{l}.preact"
            size = cell.preact_size(n, **small.cell_options)
            preact = arrays.pop(name, None)
            if preact is None or preact.shape != (size,) or preact.dtype != dtype or \
                    not np.all((preact >= 0) & (preact <= 1)):
                raise ValueError(f"{path!r}: {name} is missing or not ({size},) {dtype} gate values in [0, 1]")
        sparse = {}
        for key in d["sparse"]:
            parts = [arrays.pop(f"layers.{l}.{key}.{p}", None) for p in ("data", "indices", "indptr")]
            shape = expected[f"layers.{l}.{key}"]
            rows, cols = int(np.prod(shape[:-1])), shape[-1]
            data, indices, indptr = parts
            ok = (all(p is not None for p in parts) and data.ndim == indices.ndim == indptr.ndim == 1
                  and data.dtype == dtype and indices.dtype == np.int32 and indptr.dtype == np.int64
                  and indptr.size == rows + 1 and indptr[0] == 0 and np.all(np.diff(indptr) >= 0)
                  and indptr[-1] == data.size == indices.size
                  and (indices.size == 0 or (indices.min() >= 0 and indices.max() < cols)))
            if not ok:
                raise ValueError(f"{path!r}: the CSR arrays of layers.{l}.{key} are missing or inconsistent "
                                 f"with a {shape} matrix")
            dense = np.zeros((rows, cols), dtype)
            dense[np.repeat(np.arange(rows), np.diff(indptr)), indices] = data
            arrays[f"layers.{l}.{key}"] = dense.reshape(shape)
            sparse[key] = (data, indices, indptr)
        out.append({"preact": preact, "sparse": sparse})
    return out


def _expected_shapes(config: ModelConfig) -> dict:
    """Array name -> shape for a model of ``config`` (names as ``tree.walk`` gives them)."""
    V, m = config.vocab_size, config.emb_size
    shapes = {"emb": (V, m)}
    cell = get_cell(config.cell)
    for l, n in enumerate(config.hidden_sizes):
        for k, shape in cell.param_shapes(m, n, **config.cell_options).items():
            shapes[f"layers.{l}.{k}"] = tuple(shape)
        m = n
    shapes["out_W"] = (config.n_outputs, m)
    shapes["out_b"] = (config.n_outputs,)
    return shapes


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "CompactModel", "check_family_gates", "compact", "compact_state",
           "check_compaction_gates", "csr", "save", "load"]
