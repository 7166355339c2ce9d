"""The report figures (``l0ref.report``): kept counts, pooling, PNGs, run directories.

matplotlib comes with the ``plot`` extra, which CI installs with ``test``
(``pip install ".[test,plot]"``).  Models are built by hand in the shapes of
docs/design.md sections 2 and 3 (LSTM W (4n, m), U (4n, n); GRU W (3n, m), U (3n, n);
RHN W (2n, m), R (depth, 2n, n)), so that the figures are tested for every cell
whether or not it is registered yet; a registered cell gets a real ModelConfig.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest

from l0ref import gates as gates_mod
from l0ref import report
from l0ref.cells import CELLS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BLOCKS = {name: cell.BLOCKS for name, cell in CELLS.items()}


def make_config(cell, V, e, hidden, depth=3):
    options = {"depth": depth} if cell == "rhn" else {}
    if cell in CELLS:
        from l0ref.models import ModelConfig
        return ModelConfig(cell, V, e, tuple(hidden), options)
    return SimpleNamespace(cell=cell, vocab_size=V, emb_size=e, hidden_sizes=tuple(hidden), cell_options=options)


def make_model(cell, V, e, hidden, live, rng, depth=3, dtype=np.float64):
    """A random model whose test-time gates keep exactly ``live[l]`` neurons of group l.

    Kept neurons get log_alpha ~ N(1, 0.5): gates in (0, 1], mostly below 1; pruned ones
    log_alpha = -6, whose test-time gate is exactly 0 (Eq. 10, 11).
    """
    G = BLOCKS[cell]
    sizes = [e, *hidden]
    log_alpha = []
    for size, k in zip(sizes, live):
        a = np.full(size, -6.0)
        a[rng.choice(size, k, replace=False)] = rng.normal(1.0, 0.5, k)
        log_alpha.append(a.astype(dtype))
    layers, m = [], e
    for n in hidden:
        p = {"W": rng.uniform(-1, 1, (G * n, m)).astype(dtype), "b": np.zeros(G * n, dtype)}
        if cell == "rhn":
            p["R"] = rng.uniform(-1, 1, (depth, G * n, n)).astype(dtype)
        else:
            p["U"] = rng.uniform(-1, 1, (G * n, n)).astype(dtype)
        layers.append(p)
        m = n
    params = {"emb": rng.uniform(-1, 1, (V, e)).astype(dtype), "layers": layers,
              "out_W": rng.uniform(-1, 1, (V, m)).astype(dtype), "out_b": np.zeros(V, dtype),
              "log_alpha": {"neurons": log_alpha}}
    return make_config(cell, V, e, hidden, depth), params


def assert_png(path, max_bytes=2_000_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert 0 < len(data) < max_bytes
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0  # something is drawn


# ----------------------------------------------------------------------------- counting


def test_kept_counts_titles():
    config = make_config("lstm", 7, 6, (5, 4))
    gates = [np.array([1, 0, .5, 0, 1, .3]), np.array([0, 0, 1, .2, 1]), np.array([.9, 0, 0, 0])]
    kept = report.kept_counts(config, gates)
    assert [k.title for k in kept] == [
        "embedding: 4/6 dims kept (7 words)",
        "softmax out_W: 1/4 units kept (7 words)",
        "layer 1 W: 4/6 inputs x 3/5 units kept",
        "layer 1 U: 3/5 inputs x 3/5 units kept",
        "layer 2 W: 3/5 inputs x 1/4 units kept",
        "layer 2 U: 1/4 inputs x 1/4 units kept",
    ]
    assert report.live_counts(gates) == [4, 3, 1]


def test_kept_counts_rhn_names_its_recurrent_weights_R():
    config = make_config("rhn", 3, 4, (6,))
    kept = report.kept_counts(config, [np.ones(4), np.r_[np.zeros(2), np.ones(4)]])
    assert kept[3].title == "layer 1 R: 4/6 inputs x 4/6 units kept"
    assert (kept[2].inputs_kept, kept[2].units_kept) == (4, 4)


def test_kept_counts_rejects_sampled_or_misshapen_gates():
    config = make_config("gru", 3, 4, (6,))
    with pytest.raises(ValueError, match="gate groups"):
        report.kept_counts(config, [np.ones(4)])
    with pytest.raises(ValueError, match="of shape \\(6,\\)"):
        report.kept_counts(config, [np.ones(4), np.ones((2, 6))])


def test_kept_counts_follow_the_test_time_gates():
    rng = np.random.default_rng(1)
    config, params = make_model("lstm", 9, 8, (7, 5), (3, 6, 2), rng)
    gates = gates_mod.deterministic_gates(params["log_alpha"]["neurons"])
    assert report.live_counts(gates) == [3, 6, 2]
    assert [k.inputs_kept for k in report.kept_counts(config, gates)] == [3, 2, 3, 6, 6, 2]


def test_downsample_means_over_the_entries_that_exist():
    a = np.arange(35, dtype=float).reshape(5, 7)
    out = report.downsample(a, 2, 3)           # blocks of 3 x 3; ragged last row and column
    assert out.shape == (2, 3)
    assert out[0, 0] == a[:3, :3].mean()
    assert out[1, 2] == a[3:, 6:].mean()
    assert out[1, 1] == a[3:, 3:6].mean()
    assert report.downsample(a, 5, 7) is a


def test_downsample_keeps_zero_blocks_zero_and_kept_entries_visible():
    a = np.zeros((12, 12))
    a[5, :] = 2.0                              # one kept row, in the second block of rows
    out = report.downsample(a, 3, 3)           # blocks of 4 x 4
    assert np.all(out[1] == 2.0 / 4) and np.all(out[[0, 2]] == 0)


# ----------------------------------------------------------------------------- Fig. 2


@pytest.mark.parametrize("cell", ["lstm", "gru", "rhn"])
def test_structure_panels_blank_exactly_the_pruned_rows_and_columns(cell):
    rng = np.random.default_rng(2)
    e, hidden, depth = 6, (5, 4), 3
    config, params = make_model(cell, 7, e, hidden, (4, 3, 2), rng, depth=depth)
    g = gates_mod.deterministic_gates(params["log_alpha"]["neurons"])
    panels, _ = report.structure._structure_panels(config, params, g, "weights", (250, 500))
    G = BLOCKS[cell]
    rec = "R" if cell == "rhn" else "U"
    assert [p.kept.name for p in panels] == ["embedding", "softmax out_W", "layer 1 W", f"layer 1 {rec}",
                                            "layer 2 W", f"layer 2 {rec}"]
    rows = [g[0], g[2], g[0], g[1], g[1], g[2]]
    cols = [np.ones(7), np.ones(7), np.tile(g[1], G), np.tile(g[1], G), np.tile(g[2], G), np.tile(g[2], G)]
    for i, (p, r, c) in enumerate(zip(panels, rows, cols)):
        img = p.drawn[0]
        if p.kept.name.endswith(" R"):
            r = np.tile(r, depth)                # micro-steps stacked on the y axis
        assert img.shape == (r.size, c.size), p.kept.name
        expected = np.outer(r != 0, c != 0)
        np.testing.assert_array_equal(img != 0, expected, err_msg=p.kept.name)
        assert p.nonzero == expected.sum(), p.kept.name
    # the values are |W_hat| = |W| * both gates (Eq. 2 with the test-time gates)
    W = params["layers"][0]["W"]
    np.testing.assert_allclose(panels[2].drawn[0], np.abs(W.T) * np.outer(g[0], np.tile(g[1], G)), rtol=1e-6)


@pytest.mark.parametrize("cell, show", [("lstm", "weights"), ("gru", "weights"), ("rhn", "weights"),
                                        ("gru", "mask")])
def test_plot_structure_writes_a_png(tmp_path, cell, show):
    rng = np.random.default_rng(3)
    config, params = make_model(cell, 30, 12, (10, 8), (7, 6, 3), rng, dtype=np.float32)
    path = report.plot_structure(config, params, tmp_path / f"{cell}.png", show=show)
    assert path == tmp_path / f"{cell}.png"
    assert_png(path)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_structure_panels_of_a_registered_cells_own_parameters(cell):
    from l0ref.models import ModelConfig, init_params
    config = ModelConfig(cell, 9, 5, (4, 3), {"depth": 2} if cell == "rhn" else {})
    params = init_params(config, np.random.default_rng(10), dtype=np.float64)
    params["log_alpha"]["neurons"][1][[0, 2]] = -8.0                    # prune units 0 and 2 of layer 1
    panels, kept = report.structure._structure_panels(config, params, gates_mod.deterministic_gates(params["log_alpha"]["neurons"]),
                                            "weights", (250, 500))
    assert kept[2].title == "layer 1 W: 5/5 inputs x 2/4 units kept"
    assert np.all(panels[3].drawn[0][[0, 2]] == 0)        # pruned recurrent inputs: blank rows
    assert np.all(panels[4].drawn[0][[0, 2]] == 0)        # ... and blank rows of layer 2's W


def test_plot_structure_of_a_compacted_model_without_log_alpha(tmp_path):
    rng = np.random.default_rng(4)
    config, params = make_model("lstm", 10, 4, (3,), (4, 3), rng)
    del params["log_alpha"]
    assert_png(report.plot_structure(config, params, tmp_path / "compact.png"))
    panels, _ = report.structure._structure_panels(config, params, [np.ones(4), np.ones(3)], "weights", (250, 500))
    assert all(np.all(p.drawn[0] > 0) for p in panels)


def test_plot_structure_of_a_paper_sized_layer_is_pooled_and_small(tmp_path):
    rng = np.random.default_rng(5)
    config, params = make_model("lstm", 300, 1500, (1500,), (251, 296), rng, dtype=np.float32)
    g = gates_mod.deterministic_gates(params["log_alpha"]["neurons"])
    panels, _ = report.structure._structure_panels(config, params, g, "weights", (250, 500))
    assert all(p.drawn[0].shape[0] <= 250 and p.drawn[0].shape[1] <= 500 for p in panels)
    assert panels[2].nonzero == 4 * 251 * 296
    assert_png(report.plot_structure(config, params, tmp_path / "big.png"))


def test_plot_structure_checks_shapes(tmp_path):
    rng = np.random.default_rng(6)
    config, params = make_model("gru", 10, 4, (3,), (4, 3), rng)
    params["layers"][0]["U"] = params["layers"][0]["U"][:, :2]
    with pytest.raises(ValueError, match="layer 1 U has shape"):
        report.plot_structure(config, params, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="show must be"):
        report.plot_structure(config, params, tmp_path / "bad.png", show="colour")


# ----------------------------------------------------------------------------- curves


def _history(n=12, groups=3, with_extras=True):
    out = []
    for i in range(n):
        r = {"step": 10 * i, "tokens": 700 * i, "live": [100 - 5 * i - j for j in range(groups)]}
        if with_extras:
            r["expected_nonzero"] = 1e5 / (1 + i)
            if i % 3 == 0:
                r["valid_ppl"] = 80 + 1000 / (1 + i)
        out.append(r)
    out.append({"step": 999, "valid_ppl": 81.0})  # an evaluation-only record, no "live"
    return out


@pytest.mark.parametrize("with_extras", [True, False])
def test_plot_live_neurons_writes_a_png(tmp_path, with_extras):
    path = report.plot_live_neurons(_history(with_extras=with_extras), tmp_path / "live.png", sizes=[100, 100, 100])
    assert_png(path)


def test_plot_live_neurons_needs_live_records(tmp_path):
    with pytest.raises(ValueError, match="'live'"):
        report.plot_live_neurons([{"step": 0, "valid_ppl": 100.0}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="differ in length"):
        report.plot_live_neurons([{"step": 0, "live": [1, 2]}, {"step": 1, "live": [1]}], tmp_path / "x.png")


def test_plot_ppl_vs_width_writes_a_png(tmp_path):
    runs = [{"lambda": "0.5/N", "live": [500, 470], "test_ppl": 64.9, "expected_nonzero": 2e6, "series": "L0"},
            {"lambda": 0.6, "width": 389, "test_ppl": 65.1, "series": "L0"},
            {"label": "ISS", "width": 517, "test_ppl": 65.4, "series": "ISS"},
            {"label": "no perplexity", "width": 300}]
    assert_png(report.plot_ppl_vs_width(runs, tmp_path / "fig3.png"))
    assert [report.curves._run_label(r) for r in runs[:3]] == ["λ=0.5/N", "λ=0.6", "ISS"]
    assert report.curves._width(runs[0]) == 470 and report.curves._width({"live": [9, 3, 4]}) == 7
    with pytest.raises(ValueError, match="perplexity"):
        report.plot_ppl_vs_width(runs[3:], tmp_path / "none.png")


# ----------------------------------------------------------------------------- run directories


def _write_run(path, history, summary=None, as_dict=False):
    path.mkdir()
    data = {"history": history, "summary": summary} if as_dict else history
    (path / "history.json").write_text(json.dumps(data))
    if summary is not None and not as_dict:
        (path / "summary.json").write_text(json.dumps(summary))


def test_make_report_writes_every_figure_and_says_what_is_missing(tmp_path):
    rng = np.random.default_rng(7)
    model_a = make_model("lstm", 20, 8, (6,), (5, 4), rng)
    _write_run(tmp_path / "a", _history(groups=2), {"test_ppl": 90.0, "lambda": 0.5})
    _write_run(tmp_path / "b", _history(groups=2), {"lam1": 1.0, "lam2": 2.0}, as_dict=True)
    (tmp_path / "c").mkdir()                                   # an empty run directory

    def loader(run_dir):
        if run_dir.name == "a":
            return model_a
        raise FileNotFoundError(f"{run_dir}/checkpoint.npz")

    messages = []
    out = tmp_path / "out"
    paths = report.make_report([tmp_path / "a", tmp_path / "b", tmp_path / "c"], out, loader=loader,
                               log=messages.append)
    assert sorted(p.name for p in paths) == ["a_live.png", "a_structure.png", "b_live.png", "ppl_vs_width.png"]
    for p in paths:
        assert p.parent == out
        assert_png(p)
    text = "\n".join(messages)
    assert "b: no checkpoint" in text and "c: no history.json" in text
    assert "b: no test perplexity" in text and "c: no live widths" in text
    md = (out / "report.md").read_text()
    assert "![a_structure](a_structure.png)" in md and "c: no history.json" in md


def test_make_report_takes_models_directly_and_falls_back_to_validation_ppl(tmp_path):
    rng = np.random.default_rng(8)
    config, params = make_model("gru", 20, 8, (6,), (5, 4), rng)
    _write_run(tmp_path / "run", _history(groups=2), {"label": "λ=0.08/N"})
    messages = []
    paths = report.make_report(tmp_path / "run", tmp_path / "out", models=[(config, params)], log=messages.append)
    assert sorted(p.name for p in paths) == ["ppl_vs_width.png", "run_live.png", "run_structure.png"]
    assert any("validation perplexity" in m for m in messages)
    history, summary, notes = report.read_run(tmp_path / "run")
    record = report.runs._run_record("run", history, summary, (config, params, None), [])
    assert record["live"] == [5, 4]                 # from the model's gates, not the history
    assert record["label"] == "λ=0.08/N"


def test_make_report_without_a_loader_draws_no_structure(tmp_path):
    _write_run(tmp_path / "x", _history(groups=2), {"test_ppl": 70.0, "lam": [1, 2]})
    messages = []
    paths = report.make_report([tmp_path / "x"], tmp_path / "out", log=messages.append)
    assert sorted(p.name for p in paths) == ["ppl_vs_width.png", "x_live.png"]
    assert any("no checkpoint loader" in m for m in messages)


# ----------------------------------------------------------------------------- no matplotlib


def test_missing_matplotlib_names_the_plot_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)        # "import matplotlib..." now fails
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rng = np.random.default_rng(9)
    config, params = make_model("lstm", 5, 3, (2,), (2, 1), rng)
    calls = [lambda: report.plot_structure(config, params, tmp_path / "s.png"),
             lambda: report.plot_live_neurons(_history(groups=2), tmp_path / "l.png"),
             lambda: report.plot_ppl_vs_width([{"width": 3, "test_ppl": 9.0}], tmp_path / "p.png"),
             lambda: report.make_report([tmp_path], tmp_path / "out")]
    for call in calls:
        with pytest.raises(ImportError, match=r"pip install 'l0ref\[plot\]'"):
            call()
    assert not list(tmp_path.rglob("*.png"))


def test_importing_the_module_does_not_import_matplotlib():
    code = textwrap.dedent("""
        import sys
        sys.modules["matplotlib"] = None
        import l0ref.report as r
        try:
            r.plot_ppl_vs_width([{"width": 3, "test_ppl": 9.0}], "never.png")
        except ImportError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'l0ref[plot]'" in out.stdout
