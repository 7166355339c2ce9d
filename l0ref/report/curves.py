"""Training curves and Wen et al.'s Fig. 3.

- :func:`plot_live_neurons`: live neurons per gate group over training, with the
  expected number of nonzero weights (Eq. 4 counted over all gate blocks) and the
  validation perplexity when the history has them.
- :func:`plot_ppl_vs_width`: Fig. 3.  Perplexity against the remaining width (and the
  nonzero weights) for runs with different penalty strengths, points labeled by lambda.
- :func:`plot_size_target`: a size target's run: target, expected and realized size,
  and the Lagrangian's multipliers over training.

Both take plain lists of dicts (history records, run summaries).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .figure import figure, save
from .structure import group_names

__all__ = ["plot_live_neurons", "plot_ppl_vs_width", "plot_size_target"]


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
    fig = figure(9, 7.5 if two else 4.5)
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
    return save(fig, path)


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
    fig = figure(6.5 * len(panels), 5)
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
    return save(fig, path)


def plot_size_target(history: Sequence[dict], path, *, title: str | None = None) -> Path:
    """A size target over training: the target, the expected and the realized size as
    fractions of the full model (top), and the Lagrangian's two multipliers (bottom).

    ``history``: records with ``"target"``, ``"expected_fraction"``, ``"realized_fraction"``,
    ``"multipliers"`` ``[lam1, lam2]`` and ``"measure"`` (``training/weights.py`` writes them).
    """
    recs = [r for r in history if isinstance(r, Mapping) and r.get("target") is not None]
    if not recs:
        raise ValueError("the history has no size-target records ('target', 'expected_fraction')")
    key, xlabel = _x_axis(recs)
    xs = [r[key] if key else i for i, r in enumerate(recs)]
    measure = recs[-1].get("measure", "macs")
    what = "multiply-adds per token" if measure == "macs" else "embedding and recurrent weights"
    fig = figure(9, 7)
    ax, ax2 = fig.subplots(2, 1, sharex=True)
    ax.plot(xs, [r["target"] for r in recs], color="0.3", ls="--", label="target (ramped)")
    ax.plot(xs, [r["expected_fraction"] for r in recs], color="tab:blue", marker="o", ms=3,
            label="expected (closed form, Eq. 9)")
    if all("realized_fraction" in r for r in recs):
        ax.plot(xs, [r["realized_fraction"] for r in recs], color="tab:orange", marker="s", ms=3,
                label="realized (test-time gates)")
    final = recs[-1]["target"]
    ax.axhspan(0.95 * final, 1.05 * final, color="tab:green", alpha=0.12, label="target +-5%")
    ax.set_ylabel(f"fraction of the full model's\n{what}")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax.set_title(title or f"Size target {final:g} ({measure})")
    lam = np.array([r["multipliers"] for r in recs], float)
    ax2.plot(xs, lam[:, 0], color="tab:red", label="lambda1 (linear term)")
    ax2.plot(xs, lam[:, 1], color="tab:purple", label="lambda2 (quadratic term)")
    ax2.axhline(0, color="0.5", lw=0.8)
    ax2.set_ylabel("multiplier")
    ax2.set_xlabel(xlabel)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=9)
    return save(fig, path)
