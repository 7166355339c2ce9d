"""Adding a cell is adding one module: a toy Elman cell (``tests/toy_cell.py``), registered
with ``cells.register`` and nothing else, works in the models, the gradient checks, the
penalty counts, compaction, the size report and the figures."""
from __future__ import annotations

import types

import numpy as np
import pytest

from l0ref import cells, compact, fast, models, report, sizes, training
from tests import toy_cell
from tests.gradcheck import check_gradients


@pytest.fixture
def elman():
    cells.register(toy_cell)
    yield toy_cell
    cells.CELLS.pop(toy_cell.NAME)


def test_register_checks_the_interface():
    broken = types.ModuleType("broken")
    broken.NAME = "broken"
    with pytest.raises(ValueError, match="lacks"):
        cells.register(broken)
    assert "broken" not in cells.CELLS


def test_toy_cell_gradients(elman):
    rng = np.random.default_rng(0)
    p = elman.init_params(3, 4, rng, init_range=1.0)
    x, h0 = rng.normal(size=(5, 2, 3)), rng.normal(size=(2, 4))
    z, s = rng.uniform(0, 1, (2, 3)), rng.uniform(0, 1, 4)
    d_out, d_h = rng.normal(size=(5, 2, 4)), rng.normal(size=(2, 4))
    out, h, cache = elman.forward(p, x, z, s, h0)
    grads = elman.backward(d_out, d_h, cache)

    def f():
        o, hT, _ = elman.forward(p, x, z, s, h0)
        return float((d_out * o).sum() + (d_h * hT).sum())
    check_gradients(f, {**p, "x": x, "h0": h0, "z": z, "s": s}, grads)


def test_toy_cell_through_model_compaction_and_report(elman, tmp_path):
    rng = np.random.default_rng(1)
    cfg = models.ModelConfig("elman", 20, 6, (5, 4))
    params = models.init_params(cfg, rng, dtype=np.float64, init_range=1.0)
    for la in models.neuron_log_alpha(params):
        la[rng.random(la.shape) < 0.4] = -8.0                    # prune about 40% of each group
    tokens, targets = rng.integers(0, 20, (6, 3)), rng.integers(0, 20, (6, 3))
    loss, _, cache = models.forward(cfg, params, tokens, targets, models.inference_gates(params))
    assert np.isfinite(loss) and set(models.backward(cache)) == {"emb", "layers", "out_W", "out_b", "gates"}
    cm = compact.compact(cfg, params)
    ref, _ = models.log_probs(cfg, params, tokens, models.inference_gates(params))
    np.testing.assert_allclose(cm.log_probs(tokens)[0], ref, rtol=1e-12, atol=1e-12)
    st = sizes.size_report(cm)
    m, n = cfg.emb_size, cfg.hidden_sizes[0]
    assert st.components[1].macs_before == n * (m + n)           # one block: n m + n n
    assert training.expected_size(cfg, params)["recurrent_weights"] == 5 * 11 + 4 * 9
    report.plot_structure(cfg, params, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no kernel for cell 'elman'"):
        fast.prepare(cm.config, cm.params)
