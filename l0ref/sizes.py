"""What a compact model costs (``compact.py``): parameters and multiply-adds per token
before and after compaction (:func:`size_report`), and Lobacheva et al.'s statistic, the
constant gates per gate type and layer (:func:`constant_gates`).

A dense matrix costs its rows times its columns, less the rows of constant gates (their
preactivation gate is 0: no product computes them); a matrix kept as CSR costs its
nonzeros.  Biases, nonlinearities and the embedding lookup are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import get_cell, layer_macs, layer_param_count
from .compact import CompactModel, _rows_of
from .models import ModelConfig


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


def _live_rows(cm: CompactModel, l: int):
    """Per matrix of compact layer l (``MATRIX_KEYS``): a boolean per row (of its stack of
    rows), True where the row's preactivation gate is not constant (all True without
    preactivation gates)."""
    cell = get_cell(cm.config.cell)
    layer, pre = cm.params["layers"][l], cm.structure[l]["preact"]
    out = {}
    for key in cell.MATRIX_KEYS:
        rows = _rows_of(layer[key]).shape[0]
        out[key] = np.ones(rows, bool) if pre is None else (pre[:rows] != 0)
    return out


def _structured_counts(cm: CompactModel, l: int) -> tuple[int, int]:
    """(weights and biases, multiply-adds per token) of compact layer l with constant gates
    and CSR matrices: a CSR matrix costs its nonzeros, a dense one its non-constant rows."""
    cell = get_cell(cm.config.cell)
    layer, sparse = cm.params["layers"][l], cm.structure[l]["sparse"]
    params = macs = 0
    live = _live_rows(cm, l)
    for key in cell.PARAM_KEYS:
        a = layer[key]
        if key not in cell.MATRIX_KEYS:
            params += a.size
            continue
        if key in sparse:
            count = int(sparse[key][0].size)
        else:
            count = int(live[key].sum()) * a.shape[-1]
        params += count
        macs += count
    return params, macs


def constant_gates(cm: CompactModel) -> list[dict]:
    """The Lobacheva statistic, per layer: live units and, per gate type (the cell's
    ``BLOCK_NAMES``), how many of the live units have that gate constant (preactivation
    gate 0); for the RHN a (unit, micro-step) pair counts, out of ``units x depth``.
    Empty counts without preactivation gates."""
    cell = get_cell(cm.config.cell)
    out = []
    for l, n in enumerate(cm.config.hidden_sizes):
        pre = cm.structure[l]["preact"]
        row = {"layer": l + 1, "live_units": int(n), "constant": {}, "of": int(n)}
        if pre is not None and n:
            blocks = pre.reshape(-1, cell.BLOCKS, n)                 # (steps, G, n')
            row["of"] = int(n * blocks.shape[0])
            row["constant"] = {name: int((blocks[:, a] == 0).sum()) for a, name in enumerate(cell.BLOCK_NAMES)}
        out.append(row)
    return out


def size_report(cm: CompactModel) -> SizeReport:
    """Counts before and after compaction.

    Parameters: every weight and bias (no ``log_alpha``).  Multiply-adds per token: the
    matrix-vector products of the dense model (all gate blocks), the embedding lookup
    counted as 0 and the softmax as ``V * n_L`` (a classifier's dense layer as ``C * n_L``,
    though it runs once per document); biases, nonlinearities and the mask
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
        if cm.structure[l]["preact"] is not None or cm.structure[l]["sparse"]:
            pa, ma = _structured_counts(cm, l)
        comps.append(Component(f"layer {l + 1}", f"{m_full}->{n_full}", f"{m_small}->{n_small}", pb, pa, mb, ma))
        m_full, m_small = n_full, n_small
    K, name = full.n_outputs, "softmax" if full.n_classes is None else "classes"   # a classifier's, once per document
    comps.append(Component(name, f"{m_full}->{K}", f"{m_small}->{K}",
                           K * m_full + K, K * m_small + K, K * m_full, K * m_small))
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


def format_constant_gates(cm: CompactModel) -> str:
    """:func:`constant_gates` as lines: per layer, live units and constant gates per type."""
    lines = []
    for row in constant_gates(cm):
        if not row["constant"]:
            continue
        parts = ", ".join(f"{name} {k}/{row['of']}" for name, k in row["constant"].items())
        lines.append(f"layer {row['layer']}: {row['live_units']} live units; constant gates: {parts}")
    return "\n".join(lines)


__all__ = ["Component", "SizeReport", "size_report", "format_size_report", "constant_gates",
           "format_constant_gates"]
