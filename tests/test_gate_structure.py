"""The gate-structure experiment's bookkeeping (benchmarks/gate_structure.py and gate_structure_report.py): which results
a report sees, the lambda rule, the same-quality comparison of issue 12's second target,
and the reuse of the unpruned run across lambdas.  The runs themselves take minutes each and
need the shared data; these are the script's decisions on results written here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def gs():
    return load_benchmark("gate_structure")


@pytest.fixture(scope="module")
def rep():
    return load_benchmark("gate_structure_report")


def _row(config, valid, ms, full_ms=10.0, metric="accuracy"):
    return {"config": config, "valid": valid, "quality": valid, "ms": ms, "full_ms": full_ms, "metric": metric}


def _doc(task, lam, rows, finetune=0.0):
    return {"task": task, "lam": lam, "finetune": finetune, "rows": rows}


def test_load_docs_merges_published_and_new_results(rep, tmp_path):
    published = tmp_path / "published.json"
    old = [_doc("rt", 0.6, [_row("base", 0.77, 2.0)]), _doc("rt", 1.0, [_row("base", 0.70, 2.0)])]
    published.write_text(json.dumps({"chosen": {"rt": 0.6}, "tasks": [dict(old[0], chosen=True), old[1]]}))
    out = tmp_path / "out"
    (out / "rt_lam1").mkdir(parents=True)
    (out / "rt_lam1" / "results.json").write_text(json.dumps(_doc("rt", 1.0, [_row("base", 0.75, 2.0)])))
    (out / "r8_lam1").mkdir()
    (out / "r8_lam1" / "results.json").write_text(json.dumps(_doc("r8", 1, [_row("base", 0.9, 2.0)])))
    docs = {(d["task"], d["lam"]): d for d in rep.load_docs(out, published)}
    assert set(docs) == {("rt", 0.6), ("rt", 1.0), ("r8", 1)}
    assert docs[("rt", 1.0)]["rows"][0]["valid"] == 0.75           # the new result wins
    assert "chosen" not in docs[("rt", 0.6)]                        # the report decides that again


def test_a_new_result_keeps_the_published_rows_of_other_run_types(rep, tmp_path):
    """A folder that ran ``--configs W+G+N@6`` (and its base) at a published lambda: its rows
    replace those of the same run types, the published N row stays, in CONFIGS order."""
    published = tmp_path / "published.json"
    old = _doc("ptb", 4.0, [_row("base", 180.0, 20.0, metric="ppl"), _row("N", 185.0, 9.0, metric="ppl")])
    published.write_text(json.dumps({"tasks": [old]}))
    out = tmp_path / "out"
    (out / "ptb_lam4").mkdir(parents=True)
    new = _doc("ptb", 4.0, [_row("base", 180.0, 21.0, metric="ppl"), _row("W+G+N@6", 184.0, 8.0, metric="ppl")])
    (out / "ptb_lam4" / "results.json").write_text(json.dumps(new))
    (doc,) = rep.load_docs(out, published)
    assert [(r["config"], r["ms"]) for r in doc["rows"]] == [("base", 21.0), ("N", 9.0), ("W+G+N@6", 8.0)]
    assert rep.load_docs(tmp_path / "none", tmp_path / "missing.json") == []


def test_choose_passes_over_lambdas_without_a_w_g_n_run(rep):
    docs = [_doc("rt", 8.0, [_row("base", 0.77, 3.0), _row("W+G+N", 0.76, 1.0)]),
            _doc("rt", 12.0, [_row("base", 0.77, 3.0), _row("W+G+N@6", 0.77, 1.0)])]
    assert rep.choose(docs) == {"rt": 8.0}


def test_choose_takes_the_largest_lambda_within_two_points_on_valid(rep):
    docs = [_doc("rt", lam, [_row("base", 0.77, 2.0), _row("W+G+N", v, 1.0)])
            for lam, v in ((0.3, 0.76), (0.6, 0.751), (1.0, 0.74))]
    assert rep.choose(docs) == {"rt": 0.6}
    lm = [_doc("ptb", lam, [_row("base", 100.0, 2.0, metric="perplexity"), _row("W+G+N", v, 1.0, metric="perplexity")])
          for lam, v in ((2, 101.0), (4, 103.0))]
    assert rep.choose(lm) == {"ptb": 2}


def test_same_quality_pairs_each_n_run_with_the_fastest_wgn_at_least_as_good(rep):
    docs = [_doc("r8", 0.6, [_row("N", 0.90, 4.0), _row("W+G+N", 0.89, 4.0)]),
            _doc("r8", 0.8, [_row("N", 0.88, 2.5), _row("W+G+N", 0.905, 3.0)]),
            _doc("r8", 1.0, [_row("N", 0.95, 2.0), _row("W+G+N", 0.89, 2.0, full_ms=5.0)]),
            _doc("r8", 2.0, [_row("W+G+N", 0.91, 1.0)], finetune=0.2)]       # fine-tuned: not a candidate
    res = rep.same_quality(docs)["r8"]
    verdicts = [(p["ref"]["lam"], p["best"] and p["best"]["lam"], p["verdict"]) for p in res["pairs"]]
    # N 0.6 (0.90, 2.5x): W+G+N 0.8 (0.905, 3.33x) is as good and faster; N 0.8 (0.88, 4x):
    # the W+G+N runs as good are 0.6 (2.5x), 0.8 (3.33x), 1.0 (2.5x, its full model timed at 5 ms)
    assert verdicts == [(0.6, 0.8, "no slower"), (0.8, 0.8, "slower"), (1.0, None, "none as good")]
    assert res["met"] is False
    assert res["pairs"][0]["best"]["speedup"] == pytest.approx(10 / 3)
    text = rep.format_same_quality({"r8": res})
    assert "1.33x as fast" in text and "1.20x slower" in text and "no W+G+N run as good" in text


def _timed(row, rows_ms, lanes_ms, full_rows_ms, full_lanes_ms):
    """A classifier row whose two layouts were both timed (``ms`` stays the default's)."""
    return dict(row, rows_ms=rows_ms, lanes_ms=lanes_ms, full_rows_ms=full_rows_ms, full_lanes_ms=full_lanes_ms)


def test_same_quality_also_compares_each_model_in_its_faster_layout(rep):
    """N timed in the rows (3 ms) though its lanes take 1.5; W+G+N in the lanes (2 ms): by
    the default layouts W+G+N is 1.5x as fast, each in its faster layout 1.33x slower; the
    full-size model's faster layout (9 ms, not the default's 10) divides both."""
    docs = [_doc("rt", 8.0, [_timed(_row("N", 0.76, 3.0), 3.0, 1.5, 10.0, 9.0),
                             _timed(_row("W+G+N", 0.77, 2.0), 2.5, 2.0, 10.0, 9.0)])]
    res = rep.same_quality(docs)["rt"]
    (pair,) = res["pairs"]
    assert pair["verdict"] == "no slower" and pair["verdict_best"] == "slower"
    assert pair["ref"]["speedup_best"] == pytest.approx(6.0) and pair["best_layout"]["speedup_best"] == pytest.approx(4.5)
    assert res["met"] and not res["met_best"]
    assert "| 1.50x as fast | 1.33x slower |" in rep.format_same_quality({"rt": res})


def test_same_quality_in_the_faster_layouts_may_pick_another_lambda(rep):
    docs = [_doc("r8", 1.0, [_row("N", 0.90, 2.0), _timed(_row("W+G+N", 0.91, 1.0), 1.0, 1.0, 10.0, 10.0)]),
            _doc("r8", 2.0, [_row("W+G+N", 0.92, 1.25)])]                                # only one layout timed
    (pair,) = rep.same_quality(docs)["r8"]["pairs"]
    assert pair["best"]["lam"] == 1.0 and pair["best_layout"]["lam"] == 1.0
    docs[1]["rows"][0] = _timed(docs[1]["rows"][0], 1.25, 0.5, 10.0, 10.0)             # its lanes: 20x
    (pair,) = rep.same_quality(docs)["r8"]["pairs"]
    assert pair["best"]["lam"] == 1.0 and pair["best_layout"]["lam"] == 2.0
    assert "4.00x as fast (lambda 2)" in rep.format_same_quality(rep.same_quality(docs))


def test_same_quality_for_perplexity_means_lower_is_as_good(rep):
    docs = [_doc("ptb", 2, [_row("N", 180.0, 5.0, metric="perplexity"), _row("W+G+N", 179.0, 4.0, metric="perplexity")])]
    res = rep.same_quality(docs)["ptb"]
    assert res["pairs"][0]["verdict"] == "no slower" and res["met"]


def _finished_base(gs, folder: Path, task: dict) -> None:
    folder.mkdir(parents=True)
    for name in ("compact.npz", "checkpoint.npz"):
        (folder / name).write_bytes(b"x")
    config = {"train": gs.train_config(task, "base").to_dict(),
              "model": dict(task["model"], cell="lstm", gate_families=["neurons"], vocab_size=50)}
    (folder / "summary.json").write_text(json.dumps({"config": config}))


def test_reuse_base_copies_the_same_unpruned_run_from_another_lambda(gs, tmp_path):
    task = dict(gs.TASKS["r8"], data=str(tmp_path), finetune=0.0, lam=1.5)
    _finished_base(gs, tmp_path / "r8_lam1" / "base", dict(task, lam=1.0))
    out = tmp_path / "r8_lam1.5"
    out.mkdir()
    assert gs.reuse_base("r8", task, out) == tmp_path / "r8_lam1" / "base"
    assert (out / "base" / "compact.npz").read_bytes() == b"x"
    assert gs.reuse_base("r8", task, out) is None                   # there already: left alone


def test_reuse_base_refuses_other_settings(gs, tmp_path):
    task = dict(gs.TASKS["r8"], data=str(tmp_path), finetune=0.0, lam=1.5)
    _finished_base(gs, tmp_path / "r8_lam1" / "base", dict(task, epochs=3))        # trained 3 epochs
    _finished_base(gs, tmp_path / "r8_lam2" / "base", dict(task, model=dict(emb_size=64, hidden_sizes=(128,))))
    out = tmp_path / "r8_lam1.5"
    out.mkdir()
    assert gs.reuse_base("r8", task, out) is None
    assert not (out / "base").exists()


def test_configs_option_names_unknown_runs(gs, tmp_path):
    with pytest.raises(SystemExit, match="W\\+G\\+N\\+V not among ptb"):
        gs.main(["ptb", "--configs", "N,W+G+N+V", "--out", str(tmp_path), "--data", str(tmp_path)])


def test_open_start_run_type_is_asked_for_by_name(gs, tmp_path):
    """W+G+N@6: W+G+N's families with the extra gates opened at log_alpha 6; never in a task
    command's default runs; asked for by name, accepted for every task."""
    assert all("W+G+N@6" not in t["configs"] for t in gs.TASKS.values())
    task = dict(gs.TASKS["rt"], data=str(tmp_path), lam=16.0, dense_start=0.1333)
    assert gs.train_config(task, "W+G+N@6").log_alpha_init_extra == 6.0
    assert gs.train_config(task, "W+G+N").log_alpha_init_extra == 3.0
    assert gs.CONFIGS["W+G+N@6"] == gs.CONFIGS["W+G+N"]
    with pytest.raises(SystemExit, match="W\\+G\\+N@7 not among ptb's runs .*'W\\+G\\+N@6'"):
        gs.main(["ptb", "--configs", "W+G+N@7", "--out", str(tmp_path), "--data", str(tmp_path)])


def test_a_configs_subset_keeps_the_runs_finished_before(gs, tmp_path):
    """``--configs N`` in a folder where W+G+N finished: the table keeps W+G+N (and times it
    again with the others); a run that did not finish is not added."""
    for config, files in {"W+G+N": ("summary.json", "compact.npz"), "W+N": ("checkpoint.npz",)}.items():
        (tmp_path / config).mkdir()
        for f in files:
            (tmp_path / config / f).write_text("{}")
    assert gs.with_finished(["base", "N"], tmp_path) == ["base", "N", "W+G+N"]
    assert gs.with_finished(["W+G+N", "base"], tmp_path) == ["base", "W+G+N"]


def test_other_seeds_are_reported_apart_with_their_means(rep):
    def full(config, valid, test, removed):
        return dict(_row(config, valid, 1.0), quality=test, removed=removed)

    docs = [dict(_doc("rt", 0.8, [full("base", 0.77, 0.78, 0.0), full("W+G+N", 0.75, 0.76, 0.81)]), seed=0),
            dict(_doc("rt", 0.8, [full("base", 0.75, 0.76, 0.0), full("W+G+N", 0.74, 0.75, 0.83)]), seed=1),
            dict(_doc("rt", 1.0, [full("base", 0.77, 0.78, 0.0), full("W+G+N", 0.70, 0.70, 0.9)]), seed=0)]
    assert rep.choose([d for d in docs if not rep._variant(d)]) == {"rt": 0.8}
    spread = {e["config"]: e for e in rep.seed_spread(docs)}
    assert set(spread) == {"base", "W+G+N"}                          # lambda 1 had no other seed
    wgn = spread["W+G+N"]
    assert wgn["seeds"] == [0, 1] and wgn["valid"] == [0.75, 0.74]
    assert wgn["valid_gap"] == pytest.approx(0.745 - 0.76) and wgn["test_gap"] == pytest.approx(0.755 - 0.77)
    assert "valid_gap" not in spread["base"]
    assert "| rt | 0.8 | W+G+N | 0, 1 | 75.0% / 74.0% | 76.0% / 75.0% | 81.0% / 83.0% | 74.5% (-1.5) | 75.5% (-1.5) |" \
        in rep.format_seeds(list(spread.values()))
    assert "rt" not in rep.same_quality(docs)                          # no N runs: nothing to pair


def test_seed_by_seed_pairs_need_both_runs_and_judge_each_seed(rep):
    """Each seed's W+G+N against its own N (speedups full_ms / ms of the same process), the
    mean valid difference and the geometric mean of the speed ratios; a group with one
    seed only, or where a seed lacks N, is not paired."""
    def seed(s, n, w, lam=16, ds=0.1333):
        return dict(_doc("rt", lam, [_row("base", 0.77, 10.0), _row("N", *n), _row("W+G+N", *w)]),
                    seed=s, dense_start=ds)

    docs = [seed(0, (0.76, 1.0), (0.75, 2.0)),            # worse on valid, 2x slower
            seed(1, (0.76, 2.0), (0.77, 1.0)),            # better, 2x as fast: met
            seed(2, (0.76, 1.0), (0.76, 1.0)),            # even: met (no slower, as good)
            seed(1, (0.70, 1.0), (0.71, 1.0), lam=8),     # lambda 8 has one seed only
            dict(seed(2, (0.7, 1.0), (0.7, 1.0), lam=4), rows=[_row("W+G+N", 0.7, 1.0)]),
            seed(1, (0.7, 1.0), (0.7, 1.0), lam=4)]
    paired = rep.paired_seeds(docs)
    assert [(e["lam"], [p["seed"] for p in e["pairs"]]) for e in paired] == [(16, [0, 1, 2])]
    e = paired[0]
    assert [p["met"] for p in e["pairs"]] == [False, True, True] and e["met"] == 2
    assert e["pairs"][0]["ratio"] == pytest.approx(0.5) and e["pairs"][1]["ratio"] == pytest.approx(2.0)
    assert e["ratio_geomean"] == pytest.approx(1.0)
    assert e["valid_diff_mean"] == pytest.approx(0.0)
    assert e["means"]["ref"] == pytest.approx({"valid": 0.76, "speedup": (10 * 5 * 10) ** (1 / 3)})
    assert e["means"]["fast"]["speedup"] / e["means"]["ref"]["speedup"] == pytest.approx(e["ratio_geomean"])
    text = rep.format_paired(paired)
    assert "| rt | 16 | 0.1333 | W+G+N | 0 | 76.0% | 10.00x | 75.0% | 5.00x | 2.00x slower |" in text
    assert "| rt | 16 | 0.1333 | W+G+N | 1 | 76.0% | 5.00x | 77.0% | 10.00x | 2.00x as fast (target met) |" in text
    assert "met in 2 of 3; on the means: target met" in text               # as good on the mean, 1.0x
    assert e["met_mean"] and e["ratio_range"] == pytest.approx([0.5, 2.0]) and "seeds 0.50-2.00x" in text
    worse = [dict(d, rows=[dict(r, valid=r["valid"] - 0.02) if r["config"] == "W+G+N" else r for r in d["rows"]])
             for d in docs]
    (w,) = rep.paired_seeds(worse)
    assert w["ratio_geomean"] == pytest.approx(1.0) and not w["met_mean"]     # as fast, 2 points worse on the mean
    assert "met in 0 of 3; on the means: not met" in rep.format_paired([w])
    assert e["met_best"] == 2 and e["ratio_best_geomean"] == pytest.approx(1.0)   # one layout timed: the default
    docs[0]["rows"][1] = _timed(docs[0]["rows"][1], 1.0, 2.5, 10.0, 10.0)   # seed 0's N: the lanes slower
    docs[0]["rows"][2] = _timed(docs[0]["rows"][2], 2.0, 1.0, 10.0, 10.0)   # its W+G+N: the lanes 2x faster
    (e,) = rep.paired_seeds(docs)
    p = e["pairs"][0]
    assert p["ratio"] == pytest.approx(0.5) and p["ratio_best"] == pytest.approx(1.0)
    assert not p["met_best"]                                                  # as fast, but worse on valid
    assert "| 2.00x slower | 1.00x as fast |" in rep.format_paired([e])


def test_dense_start_runs_are_a_method_of_their_own(rep):
    """Never candidates of the plain runs' rule; the same rule, and the same-quality pairing,
    among themselves."""
    plain = [_doc("rt", lam, [_row("base", 0.77, 2.0), _row("N", 0.75, 1.5), _row("W+G+N", v, 1.0)])
             for lam, v in ((0.6, 0.755), (1.0, 0.74))]
    dense = [dict(_doc("rt", lam, [_row("base", 0.77, 2.0), _row("N", n, 1.2), _row("W+G+N", v, ms)]),
                  dense_start=0.1333) for lam, n, v, ms in ((1.0, 0.78, 0.78, 1.9), (4.0, 0.76, 0.76, 0.5))]
    docs = plain + dense
    assert rep.choose([d for d in docs if not rep._variant(d)]) == {"rt": 0.6}
    assert all(rep._variant(d) for d in dense)
    entry = rep.dense_start_docs(docs)[0.1333]
    assert [d["lam"] for d in entry["docs"]] == [1.0, 4.0] and entry["chosen"] == {"rt": 4.0}
    pairs = [(p["ref"]["lam"], p["best"]["lam"], p["verdict"]) for p in entry["same_quality"]["W+G+N"]["rt"]["pairs"]]
    assert pairs == [(1.0, 1.0, "slower"), (4.0, 4.0, "no slower")]
    assert [p["ref"]["lam"] for p in rep.same_quality(docs)["rt"]["pairs"]] == [0.6, 1.0]    # the plain runs alone
    assert rep._key(dense[0]) != rep._key(dict(dense[0], dense_start=0.0))
    other_seed = dict(_doc("rt", 1.0, [_row("base", 0.75, 2.0), _row("W+G+N", 0.74, 1.0)]), dense_start=0.1333, seed=1)
    for r in [*other_seed["rows"], *dense[0]["rows"], *plain[1]["rows"]]:
        r["removed"] = 0.5
    spread = rep.seed_spread(plain + dense + [other_seed])        # seed 0 of the same lambda, dense start or not
    wgn = [e for e in spread if e["config"] == "W+G+N"]
    assert len(wgn) == 1 and wgn[0]["dense_start"] == 0.1333 and wgn[0]["valid"] == [0.78, 0.74]
    assert "| rt | 1 | W+G+N (dense start 0.1333) | 0, 1 |" in rep.format_seeds(spread)


def test_reuse_base_takes_a_run_from_before_a_train_field_was_added(gs, tmp_path):
    task = dict(gs.TASKS["rt"], data=str(tmp_path), finetune=0.0, lam=4.0, dense_start=0.1333)
    _finished_base(gs, tmp_path / "rt_lam2" / "base", dict(task, lam=2.0))
    path = tmp_path / "rt_lam2" / "base" / "summary.json"
    s = json.loads(path.read_text())
    del s["config"]["train"]["dense_start"]                            # written before the field existed
    path.write_text(json.dumps(s))
    out = tmp_path / "rt_lam4_ds0.1333"
    out.mkdir()
    assert gs.reuse_base("rt", task, out) == tmp_path / "rt_lam2" / "base"
    assert gs.train_config(task, "base").dense_start == 0.0 and gs.train_config(task, "W+G+N").dense_start == 0.1333


def test_seed_means_of_perplexity_take_lower_as_better(rep):
    def seed(s, n, w):
        rows = [_row("base", 190.0, 10.0, metric="perplexity"), _row("N", *n, metric="perplexity"),
                _row("W+G+N", *w, metric="perplexity")]
        return dict(_doc("ptb", 16, rows), seed=s, dense_start=0.1333)

    (e,) = rep.paired_seeds([seed(0, (182.0, 4.0), (181.0, 4.0)), seed(1, (180.0, 4.0), (182.0, 4.0))])
    assert e["valid_diff_mean"] == pytest.approx(0.5) and not e["met_mean"]   # 0.5 higher on the mean: worse
    (e,) = rep.paired_seeds([seed(0, (182.0, 4.0), (181.0, 4.0)), seed(1, (180.0, 4.0), (180.5, 4.0))])
    assert e["valid_diff_mean"] == pytest.approx(-0.25) and e["met_mean"] and e["met"] == 1


def test_seed_pairs_figure_is_drawn_for_each_group(rep, tmp_path):
    def seed(s, task, n, w, metric="accuracy"):
        rows = [_row("base", 0.77, 10.0, metric=metric), _row("N", *n, metric=metric),
                _row("W+G+N@6", *w, metric=metric)]
        return dict(_doc(task, 16, rows), seed=s, dense_start=0.1333)

    docs = [seed(0, "rt", (0.76, 1.0), (0.77, 0.8)), seed(1, "rt", (0.75, 1.0), (0.76, 1.2)),
            seed(0, "ptb", (180.0, 4.0), (179.0, 4.0), "perplexity"),
            seed(1, "ptb", (178.0, 4.0), (178.5, 4.1), "perplexity")]
    paired = rep.paired_seeds(docs, "W+G+N@6")
    assert [e["task"] for e in paired] == ["rt", "ptb"]
    path = tmp_path / "pairs.png"
    rep.plot_seed_pairs(paired, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
