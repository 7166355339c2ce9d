"""Which gates of which units are constant: the picture of Lobacheva et al.'s gate structure.

:func:`plot_constant_gates` draws, for a model with preactivation gates, one panel per
layer: the gate types (LSTM i, f, g, o; GRU r, u, n; RHN H and T of every micro-step) on
the y axis and the layer's *live* units (neuron gate nonzero) on the x axis, coloured by
the test-time preactivation gate; a gate whose value is exactly 0 is constant (the
constant of its biases) and drawn black.  The panel title gives the statistic that
``sizes.constant_gates`` reports: per gate type, how many live units have it constant.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cells import get_cell
from .figure import figure, matplotlib_parts, save


def gate_rows(config) -> list[str]:
    """The y labels of a layer's panel: the cell's gate types, per micro-step for the RHN."""
    cell = get_cell(config.cell)
    steps = config.cell_options.get("depth", 1) if config.cell == "rhn" else 1
    if steps == 1:
        return list(cell.BLOCK_NAMES)
    return [f"{name}{s + 1}" for s in range(steps) for name in cell.BLOCK_NAMES]


def constant_gate_maps(config, gates: dict) -> list[dict]:
    """Per layer: ``values`` (gate types x live units: the preactivation gates of the live
    units), ``live`` (the units' indices) and ``constant`` (per gate type, how many are 0)."""
    if "preact" not in gates:
        raise ValueError("the model has no preactivation gates (--gates ...,preact): no gate is ever constant")
    cell = get_cell(config.cell)
    out = []
    for l, n in enumerate(config.hidden_sizes):
        s = np.asarray(gates["neurons"][l + 1])
        g = np.asarray(gates["preact"][l]).reshape(-1, n)            # (steps x blocks, n)
        live = np.flatnonzero(s != 0)
        values = g[:, live]
        names = gate_rows(config)
        per_type = {name: int((values.reshape(-1, cell.BLOCKS, live.size)[:, a] == 0).sum())
                    for a, name in enumerate(cell.BLOCK_NAMES)}
        out.append({"values": values, "live": live, "names": names, "constant": per_type,
                    "of": int(live.size * values.shape[0] // cell.BLOCKS)})
    return out


def plot_constant_gates(config, params: dict, path, gates: dict | None = None, *, title: str | None = None) -> Path:
    """Draw the constant gates of every layer (module docstring) and write them to ``path``.
    ``gates``: test-time gates of every family (default ``models.eval_gates(params)``)."""
    if gates is None:
        from ..models import eval_gates
        gates = eval_gates(params)
    maps = constant_gate_maps(config, gates)
    _, _, colormaps = matplotlib_parts()
    cmap = colormaps["viridis"].with_extremes(bad="black")
    heights = [0.4 + 0.28 * len(m["names"]) for m in maps]
    fig = figure(12, 1.0 + sum(heights) + 0.9 * len(maps))
    axes = fig.subplots(len(maps), 1, squeeze=False, height_ratios=heights)[:, 0]
    image = None
    for l, (ax, m) in enumerate(zip(axes, maps)):
        values = np.ma.masked_equal(m["values"], 0.0)
        if m["live"].size:
            image = ax.imshow(values, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=1)
        ax.set_yticks(range(len(m["names"])), m["names"])
        stat = ", ".join(f"{name} {k}/{m['of']}" for name, k in m["constant"].items())
        ax.set_title(f"layer {l + 1}: {m['live'].size} live units; constant gates (black): {stat}", fontsize=10)
        ax.set_xlabel("live unit (in order)")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="test-time preactivation gate", shrink=0.8)
    fig.suptitle(title or f"{config.cell.upper()}: which gates of which units are constant", fontsize=12)
    return save(fig, path)


__all__ = ["gate_rows", "constant_gate_maps", "plot_constant_gates"]
