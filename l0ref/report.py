"""Figures of a pruned model and its training runs, as PNG files (Wen et al. Fig. 2 and 3).

- :func:`plot_structure`: Fig. 2.  Which rows and columns of the embedding, of every
  layer's weight matrices and of the softmax survive the test-time gates (Eq. 10, 11).
- :func:`plot_live_neurons`: live neurons per gate group over training, with the
  expected number of nonzero weights (Eq. 4 counted over all gate blocks) and the
  validation perplexity when the history has them.
- :func:`plot_ppl_vs_width`: Fig. 3.  Perplexity against the remaining width (and the
  nonzero weights) for runs with different penalty strengths, points labeled by lambda.
- :func:`make_report`: the glue behind ``l0ref report RUN_DIR [...] --out DIR``.

Every function takes plain data (a config, parameter dicts, lists of dicts) and knows
nothing of the training code.  A config is a :class:`l0ref.model.ModelConfig` or anything
with the same fields (``cell``, ``vocab_size``, ``emb_size``, ``hidden_sizes``), a dict
included, so that figures can be drawn for cells that are not registered.

matplotlib is an optional dependency (``pip install 'l0ref[plot]'``), imported only when
a figure is drawn.  We never touch ``matplotlib.pyplot`` or the global backend: each
figure is a bare :class:`matplotlib.figure.Figure` on its own Agg canvas, so drawing works
without a display and leaves the caller's matplotlib state alone.

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
  them all (DESIGN.md section 3).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

PLOT_EXTRA = "pip install 'l0ref[plot]'"  #: how to get the plotting dependency
DPI = 100

#: Names of the gate blocks of W (rows of the PyTorch layout), per cell, for the axis ticks.
BLOCK_NAMES = {
    "lstm": ("i", "f", "g", "o"),   # PyTorch order; g is the paper's u
    "gru": ("r", "u", "n"),         # reset, update, candidate (PyTorch's r, z, n)
    "rhn": ("H", "T"),              # transform candidate, transform gate
}

__all__ = ["PLOT_EXTRA", "BLOCK_NAMES", "Kept", "group_names", "live_counts", "kept_counts",
           "downsample", "plot_structure", "plot_live_neurons", "plot_ppl_vs_width",
           "read_run", "make_report"]


# --------------------------------------------------------------------------- matplotlib


def _matplotlib():
    """``(Figure, FigureCanvasAgg, colormaps)``, imported on first use."""
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("l0ref.report draws its figures with matplotlib, which is not "
                          f"installed; install the plot extra: {PLOT_EXTRA}") from exc
    return Figure, FigureCanvasAgg, colormaps


def _figure(width: float, height: float, layout: str | None = "constrained"):
    Figure, FigureCanvasAgg, _ = _matplotlib()
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, palette: bool = False) -> Path:
    """Write ``fig`` as PNG.  ``palette``: quantize to 256 colours first (Pillow, which
    matplotlib requires), which makes a figure full of pooled weight images 2-3 times
    smaller at no visible cost: its colours are 16 blues, white and the greys of text."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - matplotlib depends on Pillow
            palette = False
    if not palette:
        fig.savefig(path, format="png", dpi=DPI)
        return path
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    image = Image.fromarray(np.ascontiguousarray(rgb)).quantize(256, method=0, dither=0)  # median cut, no dither
    image.save(path, format="PNG", optimize=True)
    return path


# --------------------------------------------------------------------------- counting


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


def group_names(n_layers: int) -> list[str]:
    """Names of the gate groups: ``["embedding", "layer 1", ..., "layer L"]``."""
    return ["embedding"] + [f"layer {l + 1}" for l in range(n_layers)]


def live_counts(gates: Sequence[np.ndarray]) -> list[int]:
    """Number of live neurons (gate != 0) per gate group; test-time gates, one 1-D array each."""
    out = []
    for l, g in enumerate(gates):
        g = np.asarray(g)
        if g.ndim != 1:
            raise ValueError(f"gate group {l} has shape {g.shape}; pass test-time gates, one (size,) array per group")
        out.append(int(np.count_nonzero(g)))
    return out


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

    @property
    def title(self) -> str:
        """E.g. ``"layer 1 W: 251/1500 inputs x 296/1500 units kept"``."""
        head = f"{self.name}: {self.inputs_kept}/{self.inputs_total} {self.input_label}"
        if self.units_total is None:
            return f"{head} kept ({self.words} words)"
        return f"{head} x {self.units_kept}/{self.units_total} units kept"


def _check_gates(sizes: Sequence[int], gates) -> list[np.ndarray]:
    """Test-time gates, one (size,) vector per group of ``sizes``, finite and in [0, 1]:
    :func:`l0ref.compact.check_compaction_gates`, which needs of a config only its
    ``group_sizes`` (our configs may be dicts, or name cells that are not registered).
    Cast to float64, which keeps every gate's value and so every zero."""
    from types import SimpleNamespace

    from .compact import check_compaction_gates
    return check_compaction_gates(SimpleNamespace(group_sizes=list(sizes)), gates, np.float64)


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
    rec = "R" if cell == "rhn" else "U"
    out = [Kept("embedding", live[0], e, words=V, input_label="dims"),
           Kept("softmax out_W", live[L], hidden[-1], words=V, input_label="units")]
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


# --------------------------------------------------------------------------- Fig. 2


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
    names = None
    try:  # a registered cell may name its own blocks
        from .cells import CELLS
        names = getattr(CELLS.get(cell), "BLOCK_NAMES", None)
    except ImportError:  # pragma: no cover - the package always has cells
        pass
    names = names or BLOCK_NAMES.get(cell)
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
    out_W = shape_of(params["out_W"], "out_W", (V, hidden[-1]))
    if len(params["layers"]) != L:
        raise ValueError(f"config has {L} layers, parameters have {len(params['layers'])}")
    words = np.ones(V, np.float32)
    panels = [
        _Panel(kept[0], _effective(emb.T, g[0], words, show, max_pixels), (e, V), live[0] * V,
               f"words ({V})", f"embedding dims ({e})"),
        _Panel(kept[1], _effective(out_W.T, g[L], words, show, max_pixels), (hidden[-1], V), live[L] * V,
               f"words ({V})", f"layer {L} units ({hidden[-1]})"),
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
    ``gates.test_gates(params["log_alpha"])``, or all ones if the params have none (a
    compacted model).  Matrices are mean-pooled to at most ``max_pixels`` (rows, cols)
    per panel (:func:`downsample`; the default is about a panel's size in pixels), which
    keeps the paper's 2 x 1500 LSTM with V = 10000 to a few seconds and well under 1 MB.
    ``title`` replaces the head of the figure's title (the live widths follow it).
    """
    if show not in ("weights", "mask"):
        raise ValueError(f"show must be 'weights' or 'mask', got {show!r}")
    cell, V, e, hidden = _config_fields(config)
    if gates is None:
        if params.get("log_alpha") is not None:
            from . import gates as gates_mod
            gates = gates_mod.test_gates(params["log_alpha"])
        else:
            gates = [np.ones(k) for k in (e, *hidden)]
    _, _, colormaps = _matplotlib()
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
    fig = _figure(13, height, layout=None)
    axes = fig.subplots(n_rows, 2, squeeze=False, gridspec_kw=dict(
        left=0.75 / 13, right=1 - 0.2 / 13, top=1 - top / height, bottom=0.6 / height,
        wspace=0.17, hspace=gap / panel_h))
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(ax, panel, cmaps[panel.drawn[0].shape != panel.shape], show)
    fig.suptitle("\n".join(heading), fontsize=12, y=1 - 0.08 / height, va="top")
    return _save(fig, path, palette=True)


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


# --------------------------------------------------------------------------- training curves


def _x_axis(records: list[dict]) -> tuple[str, str]:
    for key, label in (("tokens", "training tokens"), ("step", "training step")):
        if records and all(key in r for r in records):
            return key, label
    return "", "history record"


def plot_live_neurons(history: Sequence[dict], path, *, names: Sequence[str] | None = None,
                      sizes: Sequence[int] | None = None, title: str | None = None) -> Path:
    """Live neurons per gate group over training, and the cost and quality beside them.

    ``history``: a list of dicts, each with ``"tokens"`` or ``"step"`` (the x axis;
    ``tokens`` wins when every record has it) and ``"live"`` (live neurons per group,
    named ``[embedding, layer 1, ..., layer L]`` unless ``names`` are given), optionally
    ``"expected_nonzero"`` (expected nonzero weights) and ``"valid_ppl"``.  Records without ``"live"`` (e.g. evaluations
    logged on their own) only feed the second panel.  ``sizes``: full group sizes, for
    the legend.  The second panel (nonzero weights on the left axis, validation perplexity
    on a log right axis) appears when any record has either.
    """
    history = [r for r in history if isinstance(r, Mapping)]
    with_live = [r for r in history if r.get("live") is not None]
    if not with_live:
        raise ValueError("the history has no records with 'live' (live neurons per gate group)")
    key, xlabel = _x_axis(history)
    xs_all = [r[key] if key else i for i, r in enumerate(history)]
    xs = [x for x, r in zip(xs_all, history) if r.get("live") is not None]
    if len({len(r["live"]) for r in with_live}) != 1:
        raise ValueError("the history's 'live' lists differ in length (one entry per gate group expected)")
    live = np.array([list(r["live"]) for r in with_live], dtype=float)   # (records, groups)
    n_groups = live.shape[1]
    names = list(names) if names is not None else group_names(n_groups - 1)
    enz = [(x, float(r["expected_nonzero"])) for x, r in zip(xs_all, history) if r.get("expected_nonzero") is not None]
    ppl = [(x, float(r["valid_ppl"])) for x, r in zip(xs_all, history) if r.get("valid_ppl") is not None]

    two = bool(enz or ppl)
    fig = _figure(9, 7.5 if two else 4.5)
    axes = fig.subplots(2 if two else 1, 1, squeeze=False, sharex=True)[:, 0]
    ax = axes[0]
    for j in range(n_groups):
        label = names[j] if j < len(names) else f"group {j}"
        if sizes is not None and j < len(sizes):
            label += f" (of {sizes[j]})"
        ax.plot(xs, live[:, j], lw=1.8, marker="o" if len(xs) < 30 else None, ms=3, label=label)
    ax.set_ylabel("live neurons (test-time gate != 0)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(title="gate group", fontsize=9)
    ax.set_title(title or "Live neurons per gate group during training")
    if two:
        ax2 = axes[1]
        handles = []
        if enz:
            handles += ax2.plot(*zip(*enz), color="tab:purple", lw=1.8, label="expected nonzero weights")
            ax2.set_ylabel("expected nonzero weights", color="tab:purple")
            ax2.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
            ax2.set_ylim(bottom=0)
        else:
            ax2.set_yticks([])
        if ppl:
            axp = ax2.twinx() if enz else ax2
            handles += axp.plot(*zip(*ppl), color="tab:red", marker="s", ms=4, lw=1.2,
                                label="validation perplexity")
            values = [v for _, v in ppl]
            if min(values) > 0 and max(values) / min(values) > 10:
                axp.set_yscale("log")
            axp.set_ylabel("validation perplexity", color="tab:red")
        ax2.grid(alpha=0.3)
        ax2.legend(handles=handles, fontsize=9, loc="upper right")
        ax2.set_title("Cost and quality")
        ax2.set_xlabel(xlabel)
    else:
        ax.set_xlabel(xlabel)
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig. 3


def _width(run: Mapping) -> float | None:
    if run.get("width") is not None:
        return float(run["width"])
    if run.get("live") is not None and len(run["live"]) > 1:
        return float(sum(run["live"][1:]))
    return None


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _run_label(run: Mapping) -> str:
    if run.get("label"):
        return str(run["label"])
    lam = run.get("lambda")
    return "" if lam is None else f"λ={_fmt(lam)}"


def plot_ppl_vs_width(runs: Sequence[Mapping], path, *, title: str | None = None,
                      ppl_label: str = "test perplexity") -> Path:
    """Wen et al.'s Fig. 3: perplexity against the remaining width (and the nonzero weights).

    Each run is a dict with:

    - ``"test_ppl"`` (required; ``"ppl"`` also accepted), the y value;
    - ``"width"``, or ``"live"`` (live neurons per group ``[e, n_1..n_L]``, whose hidden
      part is summed): the x value of the left panel;
    - ``"nonzero_weights"`` or ``"expected_nonzero"`` (optional): the x value of a right panel,
      drawn when any run has it;
    - ``"label"`` or ``"lambda"`` (a number, a string like ``"0.5/N"`` or per-layer values):
      the point's annotation;
    - ``"series"`` (optional, e.g. ``"L0"``, ``"ISS"``): runs of one series share a colour
      and are joined in order of x.
    """
    runs = [r for r in runs if isinstance(r, Mapping)]

    def ppl_of(r):
        v = r.get("test_ppl", r.get("ppl"))
        return None if v is None else float(v)

    usable = [r for r in runs if ppl_of(r) is not None]
    if not usable:
        raise ValueError("no run has a perplexity ('test_ppl')")
    def nonzero_of(r):
        v = r.get("nonzero_weights", r.get("expected_nonzero"))
        return None if v is None else float(v)

    panels = [("width", _width)]
    if any(nonzero_of(r) is not None for r in usable):
        panels.append(("nonzero", nonzero_of))
    sources = {("exact" if r.get("nonzero_weights") is not None else "expected")
               for r in usable if nonzero_of(r) is not None}
    multi_layer = any(r.get("width") is None and r.get("live") is not None and len(r["live"]) > 2 for r in usable)
    fig = _figure(6.5 * len(panels), 5)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    series = list(dict.fromkeys(str(r.get("series", "")) for r in usable))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for ax, (kind, xfn) in zip(axes, panels):
        for si, name in enumerate(series):
            pts = sorted((xfn(r), ppl_of(r), _run_label(r)) for r in usable
                         if str(r.get("series", "")) == name and xfn(r) is not None)
            if not pts:
                continue
            xs, ys, labels = zip(*pts)
            ax.plot(xs, ys, marker="o", ms=7, lw=1.2, color=colors[si % len(colors)], label=name or None)
            for x, y, text in pts:
                if text:
                    ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
        if kind == "width":
            ax.set_xlabel("remaining width: live hidden units" + (" (summed over layers)" if multi_layer else ""))
            ax.set_title("Perplexity vs width")
        else:
            if sources == {"exact"}:
                ax.set_xlabel("nonzero recurrent weights")
            elif sources == {"expected"}:
                ax.set_xlabel("expected nonzero recurrent weights")
            else:
                ax.set_xlabel("nonzero recurrent weights (some runs: expected)")
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            ax.set_title("Perplexity vs nonzero weights")
        ax.set_ylabel(ppl_label)
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        if any(series):
            ax.legend(fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------------------------- run directories

#: Keys accepted for the final test perplexity in a run's summary, in order.
TEST_PPL_KEYS = ("test_ppl", "test_perplexity", "ppl_test")
#: Keys accepted for the penalty strength in a run's summary, in order.
LAMBDA_KEYS = ("lambda", "lam", "lambdas", "lam1")


def read_run(run_dir) -> tuple[list[dict], dict, list[str]]:
    """``(history, summary, notes)`` of a run directory, tolerant of what is missing.

    ``history.json`` may be a list of records (the dicts of :func:`plot_live_neurons`)
    or a dict with ``"history"`` (that list) and optionally ``"summary"`` and ``"config"``;
    a separate ``summary.json`` is merged into the summary.  The summary may hold
    ``test_ppl`` (or ``test_perplexity``), ``lambda`` (or ``lam``, ``lam1`` and ``lam2``),
    ``label``, ``live``, ``sizes``, ``expected_nonzero``.  ``notes`` says what was not found.
    """
    run_dir = Path(run_dir)
    notes: list[str] = []
    history: list[dict] = []
    summary: dict = {}
    hist_path = run_dir / "history.json"
    if not run_dir.is_dir():
        return [], {}, [f"{run_dir}: not a directory"]
    if hist_path.exists():
        try:
            data = json.loads(hist_path.read_text())
        except (OSError, ValueError) as exc:
            data = None
            notes.append(f"{hist_path}: unreadable ({exc})")
        if isinstance(data, list):
            history = data
        elif isinstance(data, dict):
            history = data.get("history") or data.get("records") or []
            summary.update(data.get("summary") or {})
            if "config" in data and "config" not in summary:
                summary["config"] = data["config"]
        elif data is not None:
            notes.append(f"{hist_path}: expected a list of records or a dict with 'history', got {type(data).__name__}")
    else:
        notes.append(f"{run_dir}: no history.json")
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        try:
            extra = json.loads(summary_path.read_text())
            if isinstance(extra, dict):
                summary.update(extra)
        except (OSError, ValueError) as exc:
            notes.append(f"{summary_path}: unreadable ({exc})")
    history = [r for r in history if isinstance(r, dict)]
    return history, summary, notes


def _run_record(name: str, history: list[dict], summary: dict, model, notes: list[str]) -> dict:
    """One point of Fig. 3 from what a run directory holds (see :func:`make_report`)."""
    rec: dict = {"label": summary.get("label"), "series": summary.get("series", "")}
    for key in TEST_PPL_KEYS:
        if summary.get(key) is not None:
            rec["test_ppl"] = float(summary[key])
            break
    valid = [r["valid_ppl"] for r in history if r.get("valid_ppl") is not None]
    rec["valid_ppl"] = float(summary.get("valid_ppl", valid[-1] if valid else float("nan")))
    if not rec["label"]:
        lam = next((summary[k] for k in LAMBDA_KEYS if summary.get(k) is not None), None)
        if lam is not None and lam is summary.get("lam1") and summary.get("lam2") is not None:
            rec["label"] = f"λ1={_fmt(summary['lam1'])}, λ2={_fmt(summary['lam2'])}"
        elif lam is not None:
            rec["lambda"] = lam
        else:
            notes.append(f"{name}: no lambda in the summary (keys {', '.join(LAMBDA_KEYS)}, lam2); "
                         "its point is labeled with the run name")
            rec["label"] = name
    if model is not None:
        config, params, gates = model
        if gates is None and params.get("log_alpha") is not None:
            from . import gates as gates_mod
            gates = gates_mod.test_gates(params["log_alpha"])
        if gates is not None:
            rec["live"] = live_counts(gates)
    if rec.get("live") is None:
        if summary.get("live") is not None:
            rec["live"] = list(summary["live"])
        else:
            lives = [r["live"] for r in history if r.get("live") is not None]
            rec["live"] = list(lives[-1]) if lives else None
    enz = summary.get("expected_nonzero")
    if enz is None:
        values = [r["expected_nonzero"] for r in history if r.get("expected_nonzero") is not None]
        enz = values[-1] if values else None
    rec["expected_nonzero"] = enz
    return rec


def _as_model(obj) -> tuple | None:
    """``(config, params, gates)`` from a loader's or the caller's ``(config, params[, gates])``
    tuple or ``{"config", "params"[, "gates"]}`` dict; None passes through."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj["config"], obj["params"], obj.get("gates")
    obj = tuple(obj)
    if len(obj) == 2:
        return obj[0], obj[1], None
    if len(obj) == 3:
        return obj
    raise ValueError(f"a model is (config, params) or (config, params, gates), got {len(obj)} items")


def make_report(run_dirs, out_dir, *, loader: Callable | None = None,
                models: Sequence | Mapping | None = None,
                log: Callable[[str], None] | None = None) -> list[Path]:
    """Write the figures of one or more runs into ``out_dir``; returns the PNG paths.

    For each run directory ``RUN`` (named by its last path component, made unique):

    - ``RUN_live.png`` (:func:`plot_live_neurons`) from ``RUN/history.json`` (see
      :func:`read_run` for the forms it may take);
    - ``RUN_structure.png`` (:func:`plot_structure`) from the trained model, which comes
      from ``models`` (a sequence aligned with ``run_dirs``, or a mapping from run dir to
      model) or else from ``loader(run_dir)``.  A model is ``(config, params)``,
      ``(config, params, gates)`` or a dict with those keys; the loader may return None or
      raise ``FileNotFoundError`` when a run has no checkpoint.  The checkpoint format
      belongs to the trainer, so this module reads none itself: the CLI passes its loader.

    Across runs, ``ppl_vs_width.png`` (:func:`plot_ppl_vs_width`) from each run's
    summary: test perplexity (validation perplexity for all runs if no run has a test
    perplexity, and the axis says so), lambda, and the live widths (from the model's
    gates, else the summary's ``live``, else the last history record).

    What is missing is reported through ``log`` (default: standard error) and written,
    with the list of figures, to ``out_dir/report.md``.
    """
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    run_dirs = [Path(d) for d in run_dirs]
    _matplotlib()  # fail early, with the install hint, before touching anything
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda msg: print(f"l0ref report: {msg}", file=sys.stderr))
    if isinstance(models, Mapping):
        given = {Path(k): v for k, v in models.items()}
        models = [given.get(d) for d in run_dirs]
    elif models is not None:
        models = list(models)
        if len(models) != len(run_dirs):
            raise ValueError(f"got {len(models)} models for {len(run_dirs)} run directories")

    written: list[Path] = []
    notes: list[str] = []
    records: list[dict] = []
    names = _unique_names(run_dirs)
    for i, (run_dir, name) in enumerate(zip(run_dirs, names)):
        history, summary, run_notes = read_run(run_dir)
        model = _as_model(models[i]) if models is not None else None
        if model is None and loader is not None:
            try:
                model = _as_model(loader(run_dir))
                if model is None:
                    run_notes.append(f"{name}: the loader found no checkpoint; no structure figure")
            except FileNotFoundError as exc:
                run_notes.append(f"{name}: no checkpoint ({exc}); no structure figure")
        elif model is None:
            run_notes.append(f"{name}: no model given and no checkpoint loader; no structure figure")
        if any(r.get("live") is not None for r in history):
            sizes = None
            if model is not None:
                _, _, e, hidden = _config_fields(model[0])
                sizes = [e, *hidden]
            written.append(plot_live_neurons(history, out_dir / f"{name}_live.png", sizes=sizes,
                                             title=f"{name}: live neurons per gate group"))
        elif history:
            run_notes.append(f"{name}: history has no 'live' records; no live-neuron figure")
        if model is not None:
            config, params, gates = model
            written.append(plot_structure(config, params, out_dir / f"{name}_structure.png", gates=gates,
                                          title=f"{name}: {_config_fields(config)[0].upper()} structure"))
        rec = _run_record(name, history, summary, model, run_notes)
        if rec.get("test_ppl") is None:
            run_notes.append(f"{name}: no test perplexity in the summary (keys {', '.join(TEST_PPL_KEYS)})")
        if rec.get("live") is None:
            run_notes.append(f"{name}: no live widths; left out of ppl_vs_width")
        records.append(rec)
        notes += run_notes

    with_width = [r for r in records if r.get("live") is not None]
    if any(r.get("test_ppl") is not None for r in with_width):
        points, ppl_label = [r for r in with_width if r.get("test_ppl") is not None], "test perplexity"
    else:
        points = [dict(r, test_ppl=r["valid_ppl"]) for r in with_width if np.isfinite(r["valid_ppl"])]
        ppl_label = "validation perplexity (no test perplexity recorded)"
        if points:
            notes.append("no run has a test perplexity: ppl_vs_width shows the final validation perplexity")
    if points:
        written.append(plot_ppl_vs_width(points, out_dir / "ppl_vs_width.png", ppl_label=ppl_label,
                                         title="Perplexity vs remaining width"))
    else:
        notes.append("no run has both a perplexity and live widths: no ppl_vs_width figure")
    for note in notes:
        log(note)
    lines = ["# l0ref report", "", "Runs: " + ", ".join(str(d) for d in run_dirs), "", "## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in written] or ["(none)"]
    lines += ["", "## Missing", ""] + ([f"- {n}" for n in notes] or ["(nothing)"])
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return written


def _unique_names(run_dirs: Iterable[Path]) -> list[str]:
    names, seen = [], {}
    for d in run_dirs:
        base = d.resolve().name or "run"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names
