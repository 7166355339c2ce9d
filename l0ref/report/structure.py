"""Wen et al.'s Fig. 2: the learned structure of a model.

- :func:`plot_structure`: Fig. 2.  Which rows and columns of the embedding, of every
  layer's weight matrices and of the softmax survive the test-time gates (Eq. 10, 11).

Every function takes plain data (a config, parameter dicts, lists of dicts) and knows
nothing of the training code.  A config is a :class:`l0ref.model.ModelConfig` or anything
with the same fields (``cell``, ``vocab_size``, ``emb_size``, ``hidden_sizes``), a dict
included, so that figures can be drawn for cells that are not registered.

matplotlib is an optional dependency (``pip install 'l0ref[plot]'``), imported only when
a figure is drawn (``figure.py``).

What the figures show that the paper does not say:

- Fig. 2 of the paper transposes and concatenates each layer's gate blocks; we draw the
  same thing per matrix, with the *gated input* on the y axis in every panel (embedding
  dims, a layer's inputs, the recurrent units) and the units of the layer, block after
  block, on the x axis.  So a pruned neuron of group l is a white horizontal stripe in the
  panels that read it and a white vertical stripe in each gate block of the layer it
  belongs to.
- Colour is ``|W_hat|``, the weight times both of its test-time gates (Eq. 2 with the
  Eq. 10, 11 gates): the matrix that compaction keeps.  Pruned entries are exactly zero
  and drawn pure white.  Large matrices are reduced by *mean* pooling before drawing
  (about one pixel per screen pixel), so a pooled pixel is white only if all of it is
  pruned, and its colour grows with how much of it survives (square-root scale).  Max
  pooling would be easier to read and wrong: at the paper's 17% of inputs kept, most
  pooled rows would contain a survivor and the figure would look dense.
- The RHN's recurrent weights ``R`` (depth, 2n, n) are drawn as the depth micro-step
  matrices stacked on the y axis, micro-step boundaries marked; one gate vector masks
  them all (``docs/design.md`` section 3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..gates import PARAMS_KEY, live_counts
from .figure import figure, matplotlib_parts, save

__all__ = ["Kept", "group_names", "kept_counts", "downsample", "plot_structure"]


def _config_fields(config) -> tuple[str, int, int, tuple[int, ...]]:
    """``(cell, vocab_size, emb_size, hidden_sizes)`` of a ModelConfig, a dict or any
    object with those attributes."""
    get = config.get if isinstance(config, Mapping) else (lambda k: getattr(config, k, None))
    missing = [k for k in ("cell", "vocab_size", "emb_size", "hidden_sizes") if get(k) is None]
    if missing:
        raise ValueError(f"a config needs the fields cell, vocab_size, emb_size, hidden_sizes; missing {missing}")
    hidden = tuple(int(n) for n in get("hidden_sizes"))
    if not hidden:
        raise ValueError("a config needs at least one recurrent layer (hidden_sizes is empty)")
    return str(get("cell")), int(get("vocab_size")), int(get("emb_size")), hidden


def _outputs(config, V: int) -> tuple[int, str]:
    """Rows of the output layer and what they are: words (V), or a classifier's classes."""
    get = config.get if isinstance(config, Mapping) else (lambda k: getattr(config, k, None))
    C = get("n_classes")
    return (V, "words", "softmax out_W") if C is None else (int(C), "classes", "classes out_W")


def group_names(n_layers: int) -> list[str]:
    """Names of the gate groups: ``["embedding", "layer 1", ..., "layer L"]``."""
    return ["embedding"] + [f"layer {l + 1}" for l in range(n_layers)]


@dataclass(frozen=True)
class Kept:
    """What survives of one matrix: its gated inputs and, for a layer's weights, its units.

    ``inputs_*`` count the input neurons (columns of W, U, R; embedding dims; the
    softmax's units of the last layer), ``units_*`` the layer's hidden units (per gate
    block; None for the embedding and the softmax, whose rows are words).
    """

    name: str
    inputs_kept: int
    inputs_total: int
    units_kept: int | None = None
    units_total: int | None = None
    words: int | None = None
    input_label: str = "inputs"
    rows_label: str = "words"        #: what the rows of the embedding / output layer are

    @property
    def title(self) -> str:
        """E.g. ``"layer 1 W: 251/1500 inputs x 296/1500 units kept"``."""
        head = f"{self.name}: {self.inputs_kept}/{self.inputs_total} {self.input_label}"
        if self.units_total is None:
            return f"{head} kept ({self.words} {self.rows_label})"
        return f"{head} x {self.units_kept}/{self.units_total} units kept"


def _check_gates(sizes: Sequence[int], gates) -> list[np.ndarray]:
    """Test-time gates, one (size,) vector per group of ``sizes``, finite and in [0, 1]:
    :func:`l0ref.compact.check_compaction_gates`, which needs of a config only its
    ``group_sizes`` (our configs may be dicts, or name cells that are not registered).
    Cast to float64, which keeps every gate's value and so every zero."""
    from types import SimpleNamespace

    from ..compact import check_compaction_gates
    return check_compaction_gates(SimpleNamespace(group_sizes=list(sizes)), gates, np.float64)


def _recurrent_key(cell: str) -> str:
    """The name of a cell's recurrent weights: its parameter with a ``"hid"`` axis
    (``FOLD_AXES``); "U" for a cell that is not registered."""
    from ..cells import CELLS
    module = CELLS.get(cell)
    if module is None:
        return "U"
    return next(k for k, axes in module.FOLD_AXES.items() if "hid" in axes)


def kept_counts(config, gates: Sequence[np.ndarray]) -> list[Kept]:
    """Kept neurons of every matrix of Fig. 2, in panel order: the embedding, the softmax,
    then for each layer its input weights W and its recurrent weights (U, or R for the RHN).

    ``gates``: test-time gates (Eq. 10, 11), one (size,) array per group ``[e, n_1..n_L]``.
    """
    cell, V, e, hidden = _config_fields(config)
    g = _check_gates([e, *hidden], gates)
    live = live_counts(g)
    sizes = [e, *hidden]
    L = len(hidden)
    rec = _recurrent_key(cell)
    K, _, out_name = _outputs(config, V)
    out = [Kept("embedding", live[0], e, words=V, input_label="dims"),
           Kept(out_name, live[L], hidden[-1], words=K, input_label="units", rows_label=_outputs(config, V)[1])]
    for l in range(L):
        out.append(Kept(f"layer {l + 1} W", live[l], sizes[l], live[l + 1], sizes[l + 1]))
        out.append(Kept(f"layer {l + 1} {rec}", live[l + 1], sizes[l + 1], live[l + 1], sizes[l + 1]))
    return out


def downsample(a: np.ndarray, max_rows: int, max_cols: int) -> np.ndarray:
    """Mean-pool a 2-D array to at most ``(max_rows, max_cols)``.

    Each output pixel averages a block of ``ceil(rows / max_rows) x ceil(cols / max_cols)``
    entries (fewer at the ragged last row and column: the mean is over the entries that
    exist).  A block of zeros stays exactly zero; a block with any nonzero entry of a
    nonnegative array stays nonzero.
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"downsample needs a 2-D array, got shape {a.shape}")
    if max_rows < 1 or max_cols < 1:
        raise ValueError(f"max_rows and max_cols must be >= 1, got {max_rows}, {max_cols}")
    r, c = a.shape
    fr, fc = max(1, math.ceil(r / max_rows)), max(1, math.ceil(c / max_cols))
    if fr == 1 and fc == 1:
        return a
    a = a.astype(np.result_type(a.dtype, np.float32), copy=False)
    starts_r, starts_c = np.arange(0, r, fr), np.arange(0, c, fc)
    sums = np.add.reduceat(np.add.reduceat(a, starts_r, axis=0), starts_c, axis=1)
    count_r = np.diff(np.append(starts_r, r))
    count_c = np.diff(np.append(starts_c, c))
    return sums / np.outer(count_r, count_c).astype(sums.dtype)


@dataclass
class _Panel:
    kept: Kept
    drawn: tuple           # (pooled |W_hat| or mask density, y = gated inputs; mean kept value)
    shape: tuple           # (rows, cols) before pooling
    nonzero: int           # structurally nonzero entries
    xlabel: str
    ylabel: str
    xblocks: tuple = ()    # (block size, names) of the x axis, or ()
    yblocks: int = 0       # micro-step size on the y axis (RHN R), or 0


def _effective(A: np.ndarray, row_gate: np.ndarray, col_gate: np.ndarray, show: str,
               max_pixels: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Pooled ``|A| * outer(row_gate, col_gate)`` (``show="weights"``) or pooled
    ``outer(row_gate != 0, col_gate != 0)`` (``show="mask"``), in float32, and the mean
    of its nonzero entries before pooling (the value of a pixel that is wholly kept)."""
    r = np.asarray(row_gate, np.float32)
    c = np.asarray(col_gate, np.float32)
    if show == "mask":
        full = np.outer(r != 0, c != 0).astype(np.float32)
    else:
        full = np.abs(np.asarray(A, np.float32))
        full *= r[:, None]
        full *= c[None, :]
    nonzero = np.count_nonzero(full)
    kept_mean = float(full.sum(dtype=np.float64) / nonzero) if nonzero else 0.0
    return downsample(full, *max_pixels).astype(np.float32, copy=False), kept_mean


def _block_names(cell: str, G: int) -> tuple[str, ...]:
    """The cell's own ``BLOCK_NAMES``; "block k" for a cell that is not registered."""
    from ..cells import CELLS
    names = getattr(CELLS.get(cell), "BLOCK_NAMES", None)
    if names is None or len(names) != G:
        names = tuple(f"block {k + 1}" for k in range(G))
    return tuple(names)


def _structure_panels(config, params, gates, show, max_pixels) -> tuple[list[_Panel], list[Kept]]:
    cell, V, e, hidden = _config_fields(config)
    sizes = [e, *hidden]
    L = len(hidden)
    kept = kept_counts(config, gates)
    g = _check_gates(sizes, gates)
    live = live_counts(g)

    def shape_of(a, name, expect):
        if np.shape(a) != expect:
            raise ValueError(f"parameter {name} has shape {np.shape(a)}, expected {expect}")
        return np.asarray(a)

    emb = shape_of(params["emb"], "emb", (V, e))
    K, rows, _ = _outputs(config, V)
    out_W = shape_of(params["out_W"], "out_W", (K, hidden[-1]))
    if len(params["layers"]) != L:
        raise ValueError(f"config has {L} layers, parameters have {len(params['layers'])}")
    words = np.ones(V, np.float32)
    panels = [
        _Panel(kept[0], _effective(emb.T, g[0], words, show, max_pixels), (e, V), live[0] * V,
               f"words ({V})", f"embedding dims ({e})"),
        _Panel(kept[1], _effective(out_W.T, g[L], np.ones(K, np.float32), show, max_pixels), (hidden[-1], K),
               live[L] * K, f"{rows} ({K})", f"layer {L} units ({hidden[-1]})"),
    ]
    for l, p in enumerate(params["layers"]):
        m, n = sizes[l], sizes[l + 1]
        W = np.asarray(p["W"])
        if W.ndim != 2 or W.shape[1] != m or W.shape[0] % n:
            raise ValueError(f"layer {l + 1} W has shape {W.shape}, expected (G*{n}, {m})")
        G = W.shape[0] // n
        names = _block_names(cell, G)
        in_name = "embedding dims" if l == 0 else f"layer {l} units"
        xlabel = f"layer {l + 1} units by gate block ({G} x {n})"
        panels.append(_Panel(kept[2 + 2 * l], _effective(W.T, g[l], np.tile(g[l + 1], G), show, max_pixels),
                             (m, G * n), G * live[l] * live[l + 1], xlabel, f"inputs: {in_name} ({m})",
                             xblocks=(n, names)))
        if "U" in p:
            U = np.asarray(p["U"])
            if U.shape != (G * n, n):
                raise ValueError(f"layer {l + 1} U has shape {U.shape}, expected ({G * n}, {n})")
            panels.append(_Panel(kept[3 + 2 * l], _effective(U.T, g[l + 1], np.tile(g[l + 1], G), show, max_pixels),
                                 (n, G * n), G * live[l + 1] ** 2, xlabel,
                                 f"inputs: layer {l + 1} units at t-1 ({n})", xblocks=(n, names)))
        elif "R" in p:
            R = np.asarray(p["R"])
            if R.ndim != 3 or R.shape[1:] != (G * n, n):
                raise ValueError(f"layer {l + 1} R has shape {R.shape}, expected (depth, {G * n}, {n})")
            depth = R.shape[0]
            stacked = R.transpose(0, 2, 1).reshape(depth * n, G * n)   # micro-step k's R_k^T, stacked
            panels.append(_Panel(kept[3 + 2 * l], _effective(stacked, np.tile(g[l + 1], depth),
                                                             np.tile(g[l + 1], G), show, max_pixels),
                                 (depth * n, G * n), depth * G * live[l + 1] ** 2, xlabel,
                                 f"inputs: state units per micro-step ({depth} x {n})",
                                 xblocks=(n, names), yblocks=n))
        else:
            raise ValueError(f"layer {l + 1} has no recurrent weights 'U' or 'R' (keys {sorted(p)})")
    return panels, kept


def plot_structure(config, params: dict, path, gates: Sequence[np.ndarray] | None = None, *,
                   show: str = "weights", max_pixels: tuple[int, int] = (250, 500),
                   title: str | None = None) -> Path:
    """Draw Wen et al.'s Fig. 2 for one model and write it to ``path`` (PNG).

    One panel per matrix: the input embedding ``emb`` (V, e) and the softmax ``out_W``
    (V, n_L) in the first row, then per layer its ``W`` (G n, m) and its recurrent ``U``
    (G n, n) or ``R`` (depth, G n, n).  Each panel shows the matrix transposed (gated
    inputs on the y axis, the layer's units block after block on the x axis, block
    boundaries marked), coloured by ``|W_hat|`` (``show="weights"``) or by the kept mask
    alone (``show="mask"``); pruned entries are white.  Titles give the kept counts
    (:func:`kept_counts`) and the structurally nonzero weights.

    ``gates``: test-time gates, one (size,) array per group ``[e, n_1..n_L]``; default
    ``models.inference_gates(params)``, or all ones if the params have none (a
    compacted model).  Matrices are mean-pooled to at most ``max_pixels`` (rows, cols)
    per panel (:func:`downsample`; the default is about a panel's size in pixels), which
    keeps the paper's 2 x 1500 LSTM with V = 10000 to a few seconds and well under 1 MB.
    ``title`` replaces the head of the figure's title (the live widths follow it).
    """
    if show not in ("weights", "mask"):
        raise ValueError(f"show must be 'weights' or 'mask', got {show!r}")
    cell, V, e, hidden = _config_fields(config)
    if gates is None:
        if params.get(PARAMS_KEY) is not None:
            from ..models import inference_gates
            gates = inference_gates(params)
        else:
            gates = [np.ones(k) for k in (e, *hidden)]
    _, _, colormaps = matplotlib_parts()
    from matplotlib.colors import ListedColormap
    panels, kept = _structure_panels(config, params, gates, show, max_pixels)

    # Unpooled panels: Blues without its near-white end, so that a small kept weight never
    # looks pruned.  Pooled panels: all of Blues, so that a pixel that is mostly pruned looks
    # mostly white (its mean is small) and the picture's density is the matrix's density.
    cmaps = {False: ListedColormap(colormaps["Blues"](np.linspace(0.22, 1.0, 256))).with_extremes(bad="white"),
             True: colormaps["Blues"].resampled(16).with_extremes(bad="white")}  # 16 levels: smaller PNGs
    pooled = any(p.drawn[0].shape != p.shape for p in panels)
    live = live_counts(_check_gates([e, *hidden], gates))
    widths = ", ".join(f"{name} {k}/{size}" for name, k, size in zip(group_names(len(hidden)), live, (e, *hidden)))
    colour = "|weight x gates|, normalized per panel" if show == "weights" else "kept fraction"
    heading = [f"{title or cell.upper() + ' structure at test time'}: live {widths}",
               f"white = pruned (test-time gate 0); colour = {colour}"]
    if pooled:
        heading.append("(*) pooled panels: each pixel is a block mean on a square-root scale, paler = fewer kept")

    # Fixed margins in inches (constrained layout would cost ~0.5 s here): the heading's
    # lines, then per row a two-line panel title, the panel, its tick labels and x label.
    n_rows = len(panels) // 2
    top, panel_h, gap = 0.25 * len(heading) + 0.6, 2.7, 1.05
    height = top + n_rows * panel_h + (n_rows - 1) * gap + 0.6
    fig = figure(13, height, layout=None)
    axes = fig.subplots(n_rows, 2, squeeze=False, gridspec_kw=dict(
        left=0.75 / 13, right=1 - 0.2 / 13, top=1 - top / height, bottom=0.6 / height,
        wspace=0.17, hspace=gap / panel_h))
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(ax, panel, cmaps[panel.drawn[0].shape != panel.shape], show)
    fig.suptitle("\n".join(heading), fontsize=12, y=1 - 0.08 / height, va="top")
    return save(fig, path, palette=True)


def _interpolation(ax, shape) -> str:
    """Crisp cells while the image has no more pixels than its panel (the default
    ``max_pixels`` is chosen so); smoothing otherwise, so that no kept row is dropped."""
    box = ax.get_window_extent()
    return "nearest" if shape[0] <= box.height and shape[1] <= box.width else "antialiased"


def _draw_panel(ax, panel: _Panel, cmap, show: str) -> None:
    from matplotlib.colors import Normalize, PowerNorm
    rows, cols = panel.shape
    img, kept_mean = panel.drawn
    pooled = img.shape != (rows, cols)
    nonzero = img[img > 0]
    if show == "mask" or nonzero.size == 0:
        vmax = 1.0
    elif pooled:  # a wholly kept pixel is about kept_mean: paler means fewer kept entries
        vmax = 1.25 * kept_mean
    else:
        vmax = float(np.percentile(nonzero, 99))
    # square-root colour scale when pooled: a pixel 1/4 kept is half as dark as a kept one
    norm = PowerNorm(0.5, vmin=0, vmax=vmax) if pooled else Normalize(vmin=0, vmax=vmax)
    ax.imshow(np.ma.masked_equal(img, 0), cmap=cmap, norm=norm, aspect="auto",
              interpolation=_interpolation(ax, img.shape), extent=(0, cols, rows, 0))
    ax.set_facecolor("white")
    total = rows * cols
    share = f"nonzero {panel.nonzero:,} of {total:,} ({100 * panel.nonzero / total:.1f}%)"
    ax.set_title(f"{panel.kept.title}{' (*)' if pooled else ''}\n{share}", fontsize=10)
    ax.set_xlabel(panel.xlabel, fontsize=9)
    ax.set_ylabel(panel.ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    if panel.xblocks:
        n, names = panel.xblocks
        G = len(names)
        for k in range(1, G):
            ax.axvline(k * n, color="0.25", lw=0.8, ls="--")
        ax.set_xticks([(k + 0.5) * n for k in range(G)], [f"{name}" for name in names])
    if panel.yblocks:
        depth = rows // panel.yblocks
        for k in range(1, depth):
            ax.axhline(k * panel.yblocks, color="0.6", lw=0.5, ls=":")
        step = max(1, depth // 10)
        ax.set_yticks([(k + 0.5) * panel.yblocks for k in range(0, depth, step)],
                      [f"R{k + 1}" for k in range(0, depth, step)])
    for side in ax.spines.values():
        side.set_color("0.5")
