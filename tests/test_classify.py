"""Classification end to end: labelled-text files (``data/labelled.py``), the classifier's
kernel (``fast.classify``) against the NumPy reference, training (exact resume, learning
a task a bag of words can solve), and ``l0ref train --task classify`` / ``eval`` /
``compact`` on corpora the tests write themselves."""
from __future__ import annotations

import json

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref import cli, compact, fast, models, training, tree
from l0ref.cells import CELLS
from l0ref.data import labelled
from l0ref.models import classifier

POSITIVE = ["good", "great", "fine", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull"]
FILLER = ["the", "film", "was", "a", "plot", "and", "very", "story"]


def _documents(n: int, rng, fasttext: bool = False) -> list[str]:
    """Sentences whose class is the sentiment word inside them (anywhere, 3-12 words)."""
    lines = []
    for _ in range(n):
        label = "pos" if rng.random() < 0.5 else "neg"
        words = list(rng.choice(FILLER, rng.integers(2, 11)))
        words.insert(rng.integers(0, len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        text = " ".join(words).capitalize() + "."
        lines.append(f"__label__{label} {text}" if fasttext else f"{label}\t{text}")
    return lines


@pytest.fixture(scope="module")
def labelled_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for name, n in (("train", 400), ("valid", 60), ("test", 80)):
        (d / f"{name}.tsv").write_text("\n".join(_documents(n, rng)) + "\n")
    return d


# --------------------------------------------------------------------- data


def test_both_formats_tokenization_vocabulary_and_truncation():
    c = labelled.labelled_from_lines(["pos\tDon't stop, it's GREAT!", "__label__neg A dull, dull film"],
                                     ["neg\tdull"], max_len=4)
    assert c.classes == ["neg", "pos"]
    assert c.vocab.to_list() == ["<unk>", ",", "dull", "a", "don't", "it's", "stop"]
    assert [c.vocab.decode(d) for d in c.train.docs] == [["don't", "stop", ",", "it's"], ["a", "dull", ",", "dull"]]
    assert c.train.labels.tolist() == [1, 0] and c.train.truncated == 2
    assert labelled.tokenize_document("Caf\u00e9 au-lait 3.5", lowercase=False) == ["Caf\u00e9", "au", "-", "lait",
                                                                                     "3", ".", "5"]
    capped = labelled.labelled_from_lines(["a\tx y y z z z", "b\tw"], max_vocab=3)
    assert capped.vocab.to_list() == ["<unk>", "z", "y"]


@pytest.mark.parametrize("lines, message", [
    (["pos\tgood", "no label here"], "line 2: no label"),
    (["pos\tgood", "\tgood"], "line 2: empty label"),
    (["pos\tgood", "neg\t   "], "line 2: label 'neg' with no text"),
    (["pos\tgood", "neg\t..."], None),
    (["__label__ good"], "with no label name"),
    (["__label__a __label__b text"], "more than one fastText label"),
    (["pos\tgood", "pos\tfine"], "a classifier needs two classes"),
])
def test_bad_labelled_lines_are_named(lines, message):
    if message is None:            # punctuation alone is a document of punctuation tokens
        assert labelled.labelled_from_lines(lines).train.docs[1].size == 3
        return
    with pytest.raises(ValueError, match=message):
        labelled.labelled_from_lines(lines)


def test_file_errors_name_the_file(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("pos\tgood\nneg\tbad\n")
    other = tmp_path / "valid.tsv"
    other.write_text("pos\tgood\nmaybe\tso so\n")
    with pytest.raises(ValueError, match=r"valid.tsv: labels \['maybe'\] do not occur in the training file"):
        labelled.load_labelled(train, other)
    latin = tmp_path / "latin1.tsv"
    latin.write_bytes("pos\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.tsv.*not valid UTF-8"):
        labelled.load_labelled(latin)
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        labelled.load_labelled(tmp_path / "nope.tsv")
    with pytest.raises(ValueError, match="max_len must be a positive integer"):
        labelled.load_labelled(train, max_len=0)


def test_length_batches_and_padding():
    lengths = np.array([5, 1, 3, 3, 2, 8, 1])
    batches = labelled.length_batches(lengths, 3)
    assert [b.tolist() for b in batches] == [[1, 6, 4], [2, 3, 0], [5]]
    shuffled = labelled.length_batches(lengths, 3, np.random.default_rng(1))
    assert sorted(map(tuple, shuffled)) == sorted(map(tuple, batches))
    docs = [np.arange(n) + 1 for n in lengths]
    tokens, got = labelled.pad(docs, [5, 1])
    assert tokens.shape == (8, 2) and got.tolist() == [8, 1]
    assert tokens[:, 1].tolist() == [1] + [labelled.PAD_ID] * 7


# --------------------------------------------------------------------- kernel


def _random_classifier(cell, families, dtype, seed, sizes=(7, 5)):
    opts = {"depth": 2} if cell == "rhn" else {}
    mc = models.ModelConfig(cell, 40, 6, sizes, opts, families, 3)
    rng = np.random.default_rng(seed)
    p = models.init_params(mc, rng, dtype)
    for group in p["log_alpha"].values():
        for a in group:
            a[...] = rng.normal(0.5, 2.0, a.shape)       # some gates closed, some constant
    return mc, p, rng


#: The cells and layouts of ``fast.classify`` (the documents in the lanes: the LSTM's only).
CELL_LAYOUTS = [(cell, "rows") for cell in sorted(CELLS)] + [("lstm", "lanes")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("families", [("neurons",), ("neurons", "preact", "weights", "vocab")],
                         ids=["N", "NGWV"])
@pytest.mark.parametrize("cell, layout", CELL_LAYOUTS)
def test_kernel_classifier_equals_the_reference(cell, layout, families, dtype):
    """Masked full model (test-time gates) == compact NumPy == ``fast.classify``, documents of
    lengths 1..T in one batch: float64 to 1e-12, float32 to 1e-5."""
    for seed in range(3):
        mc, p, rng = _random_classifier(cell, families, dtype, seed)
        cm = compact.compact(mc, p)
        B = (5, 21, 3)[seed]                                # 21 documents: fewer row counts than lengths
        lengths = np.concatenate([[9, 1, 4, 9, 2], rng.integers(1, 10, 16)])[:B]
        tokens = rng.integers(0, 40, (9, B))
        ref = classifier.log_probs(mc, p, tokens, lengths, models.eval_gates(p))
        small = classifier.log_probs(cm.config, cm.params, tokens, lengths)
        ker = fast.classify(fast.prepare(cm.config, cm.params), tokens, lengths, layout=layout)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(small, ref, rtol=0, atol=tol)
        np.testing.assert_allclose(ker, ref, rtol=0, atol=tol)


@pytest.mark.parametrize("sparse", ["never", "always"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_dense_and_csr_layers_classify_alike(cell, sparse):
    """The packed dense layers (constant rows included), the lanes layout of the LSTM's
    and the padded CSR ones give the reference's result, whichever the driver is told to
    take."""
    mc, p, rng = _random_classifier(cell, ("neurons", "preact", "weights"), np.float64, 4)
    for a in p["log_alpha"]["preact"]:
        a.reshape(-1)[::3] = -10.0                                   # closed: constant gates
    cm = compact.compact(mc, p)
    prepared = fast.prepare(cm.config, cm.params, sparse=sparse)
    assert all(bool(q.get("sparse")) == (sparse == "always") for q in prepared.layers)
    if sparse == "never":
        assert sum(q["constant_rows"] for q in prepared.layers) > 0      # the constant-row layout is run
    lengths = np.array([3, 8, 1, 8, 5, 2, 7])
    tokens = rng.integers(0, 40, (8, 7))
    ref = classifier.log_probs(mc, p, tokens, lengths, models.eval_gates(p))
    np.testing.assert_allclose(fast.classify(prepared, tokens, lengths, layout="rows"), ref, rtol=0, atol=1e-12)
    if cell == "lstm" and sparse == "never":
        np.testing.assert_allclose(fast.classify(prepared, tokens, lengths, layout="lanes"), ref, rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 19), e=st.integers(1, 11), batch=st.integers(1, 40),
       closed=st.floats(0.0, 1.0), dtype=st.sampled_from([np.float32, np.float64]))
def test_lanes_layout_equals_the_reference_on_drawn_shapes(seed, n, e, batch, closed, dtype):
    """The LSTM with the documents in the lanes (``fast/lanes.py``) on drawn sizes, batches
    (several vectors of documents, a partial last one), lengths and constant gates: the
    reference's result, with one thread and with two (each its own vectors of documents)."""
    rng = np.random.default_rng(seed)
    mc = models.ModelConfig("lstm", 30, e, (n,), {}, ("neurons", "preact"), 4)
    p = models.init_params(mc, rng, dtype)
    for a in p["log_alpha"]["neurons"]:
        a[...] = 10.0                                              # every neuron kept
    for a in p["log_alpha"]["preact"]:
        a[...] = np.where(rng.random(a.shape) < closed, -10.0, 10.0)   # closed: constant gates
    cm = compact.compact(mc, p)
    lengths = rng.integers(1, 12, batch)
    tokens = rng.integers(0, 30, (int(lengths.max()), batch))
    ref = classifier.log_probs(mc, p, tokens, lengths, models.eval_gates(p))
    prepared = fast.prepare(cm.config, cm.params, sparse="never")
    tol = 1e-12 if dtype == np.float64 else 1e-5
    one = fast.classify(prepared, tokens, lengths, layout="lanes", threads=1)
    np.testing.assert_allclose(one, ref, rtol=0, atol=tol)
    if numba.get_num_threads() >= 2:
        np.testing.assert_array_equal(fast.classify(prepared, tokens, lengths, layout="lanes", threads=2), one)


def test_lanes_product_and_blocks():
    """``lanes.product`` == NumPy's ``M @ X`` (+ bias, or + C) in the lanes asked for, rows
    not a multiple of 8, an odd number of vectors (the two-vector and one-vector passes);
    the lanes outside untouched."""
    from l0ref.fast import lanes, simd
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        L = simd.lanes(dtype)
        M = rng.normal(size=(13, 5)).astype(dtype)
        X = rng.normal(size=(5, 5 * L)).astype(dtype)
        bias = np.zeros(16, dtype)
        bias[:13] = rng.normal(size=13)
        P = lanes.pack_blocks(M, dtype)
        assert P.shape == (2, 5, 8) and np.array_equal(P[1, :, 5:], np.zeros((5, 3)))
        C = np.full((16, 5 * L), 7.0, dtype)
        lanes.product(P, X, L, 4 * L, C, True, bias)
        want = M @ X[:, L:4 * L] + bias[:13, None]
        tol = 1e-5 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(C[:13, L:4 * L], want, rtol=0, atol=tol)
        assert np.all(C[:, :L] == 7.0) and np.all(C[:, 4 * L:] == 7.0)
        lanes.product(P, X, L, 4 * L, C, False, bias)
        np.testing.assert_allclose(C[:13, L:4 * L], 2 * want - bias[:13, None], rtol=0, atol=2 * tol)


def test_auto_takes_the_layout_estimated_faster(monkeypatch):
    """"auto" (``documents.choose_layout``): the lanes where every layer is a dense LSTM
    layer, the threads fit the lanes and ``documents.lanes_over_rows`` estimates them
    faster: small layers and little padding, constant gates or not; the rows for one long
    document among short ones, and for layers too wide for the lanes' padding.  The
    estimate by hand (the work-weighted mean of the layers'), and either layout equal to
    the reference."""
    from l0ref.fast import documents, simd
    taken = []
    for name in ("_lanes_last_outputs", "_rows_last_outputs"):
        real = getattr(documents, name)
        monkeypatch.setattr(documents, name, lambda *a, _real=real, _name=name: taken.append(_name) or _real(*a))
    L = simd.lanes(np.float64)
    even = np.full(L, 5)                                             # one whole vector at every step: waste 1
    skewed = np.concatenate([[40], np.full(L - 1, 2)])               # 38 steps of one document in a vector
    waste = documents._lanes_waste(documents._step_counts(skewed), np.float64)
    assert documents._lanes_waste(documents._step_counts(even), np.float64) == 1.0
    assert waste == 40 * L / (40 + 2 * (L - 1))

    def estimate(config, prepared, w):
        m, num, den = config.emb_size, 0.0, 0.0
        for q in prepared.layers:
            n, const = q["n"], q["constant_rows"]
            k = max(documents.LANES_K - documents.LANES_K_SMALL / n, documents.LANES_K_MIN)
            num += 4 * n * (m + n) * w * k * (1 - documents.LANES_CONSTANT * const / (4 * n))
            den += 4 * n * (m + n)
            m = n
        return num / den

    mc, p, rng = _random_classifier("lstm", ("neurons", "preact"), np.float64, 4)
    for group in p["log_alpha"].values():
        for a in group:
            a[...] = 10.0                                            # every unit live
    for a in p["log_alpha"]["preact"]:
        a.reshape(-1)[::3] = -10.0                                   # closed: constant gates
    plain_mc, plain_p, _ = _random_classifier("lstm", ("neurons",), np.float64, 4, sizes=(40, 36))
    for a in plain_p["log_alpha"]["neurons"]:
        a[...] = 10.0
    layouts = []
    for (config, params), lengths in [((mc, p), even), ((mc, p), skewed), ((plain_mc, plain_p), even),
                                      ((plain_mc, plain_p), skewed)]:
        small = _compact(config, params)
        prepared = fast.prepare(*small, sparse="never")
        assert small[0].hidden_sizes == config.hidden_sizes
        counts = documents._step_counts(np.sort(lengths)[::-1])
        by_hand = estimate(small[0], prepared, documents._lanes_waste(counts, np.float64))
        assert documents.lanes_over_rows(prepared, counts) == pytest.approx(by_hand, rel=1e-12)
        want = "_lanes_last_outputs" if by_hand < 1 else "_rows_last_outputs"
        layouts.append(want)
        tokens = rng.integers(0, 40, (int(lengths.max()), len(lengths)))
        taken.clear()
        got = fast.classify(prepared, tokens, lengths, threads=1)
        assert taken == [want]
        ref = classifier.log_probs(config, params, tokens, lengths, models.eval_gates(params))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert layouts[0] == layouts[2] == "_lanes_last_outputs"       # small layers, no padding: at every width
    assert layouts[3] == "_rows_last_outputs"                       # wide layers, much padding: at every width
    assert any(q["constant_rows"] for q in fast.prepare(*_compact(mc, p), sparse="never").layers)


def test_lanes_layout_is_refused_where_it_cannot_run():
    """Only dense LSTM layers run in the lanes: a GRU classifier, or CSR layers, get a clear
    error for ``layout="lanes"`` (and "auto" takes the rows); an unknown layout too."""
    mc, p, rng = _random_classifier("gru", ("neurons",), np.float64, 0)
    tokens, lengths = rng.integers(0, 40, (4, 3)), np.array([4, 2, 1])
    prepared = fast.prepare(*_compact(mc, p))
    with pytest.raises(ValueError, match="layout 'lanes' runs dense LSTM layers only; this gru classifier"):
        fast.classify(prepared, tokens, lengths, layout="lanes")
    mc, p, rng = _random_classifier("lstm", ("neurons", "weights"), np.float64, 0)
    sparse = fast.prepare(*_compact(mc, p), sparse="always")
    with pytest.raises(ValueError, match="this lstm classifier has CSR layers"):
        fast.classify(sparse, tokens, lengths, layout="lanes")
    with pytest.raises(ValueError, match="layout must be one of"):
        fast.classify(sparse, tokens, lengths, layout="columns")


@pytest.mark.parametrize("schedule", ["rows", "columns"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_a_packed_layer_is_each_sequence_run_alone(cell, schedule):
    """``run_packed`` over steps whose row counts shrink == ``run_layer`` on each sequence
    alone (the rows of a step are the first sequences; the ended ones keep their state),
    split by rows or by columns (where the threads share the interleaved state)."""
    mc, p, rng = _random_classifier(cell, ("neurons", "preact"), np.float64, 5)
    cm = compact.compact(mc, p)
    q = fast.prepare(cm.config, cm.params, sparse="never", parts=3).layers[0]
    lengths = np.array([6, 6, 4, 1])
    x = rng.normal(size=(6, 4, cm.config.emb_size))
    live = np.arange(6)[:, None] < lengths[None, :]
    starts = np.concatenate([[0], np.cumsum(live.sum(axis=1))])
    out, states = fast.driver.run_packed(cell, q, x[live], starts, schedule=schedule)
    for b, n in enumerate(lengths):
        alone, final = fast.driver.run_layer(cell, q, x[:n, b:b + 1])
        np.testing.assert_allclose(out[starts[:n] + b], alone[:, 0], rtol=0, atol=1e-13)
        final = final if isinstance(final, tuple) else (final,)
        if len(final) > 1:                                        # the LSTM's c: at the last step
            np.testing.assert_allclose(states[1][b], final[1][0], rtol=0, atol=1e-13)
    for bad in ([0, 3, 6], [0, 4, 8, 13, 15, 16, 17], [0, 4, 8, 12, 15, 16, 18]):
        with pytest.raises(ValueError, match="starts must run from 0 to the 17 rows"):
            fast.driver.run_packed(cell, q, x[live], np.array(bad))


@settings(max_examples=60)
@given(lengths=st.lists(st.integers(1, 50), min_size=1, max_size=40), segments=st.integers(1, 10))
def test_length_segments_cover_every_step_of_every_document(lengths, segments):
    """Each document's steps are computed exactly once, in order, by at most ``segments``
    row counts that never grow."""
    desc = np.sort(np.array(lengths))[::-1]
    span = fast.documents.length_segments(desc, segments)
    assert len(span) <= segments and span[0][0] == 0 and span[-1][1] == desc[0]
    assert all(a[1] == b[0] and a[2] > b[2] for a, b in zip(span, span[1:]))
    for i, n in enumerate(desc):
        steps = [t for t0, t1, rows in span if rows > i for t in range(t0, t1)]
        assert steps[:n] == list(range(n))


def test_kernel_refuses_the_wrong_task_and_bad_lengths():
    mc, p, rng = _random_classifier("lstm", ("neurons",), np.float64, 0)
    prepared = fast.prepare(*_compact(mc, p))
    tokens = rng.integers(0, 40, (4, 2))
    with pytest.raises(ValueError, match="document classifier; run it with fast.classify"):
        fast.run(prepared, tokens)
    with pytest.raises(ValueError, match="lengths must be"):
        fast.classify(prepared, tokens, np.array([5, 1]))
    lm = models.ModelConfig("lstm", 40, 6, (7,))
    lp = models.init_params(lm, rng, np.float64)
    with pytest.raises(ValueError, match="language model; run it with fast.run"):
        fast.classify(fast.prepare(*_compact(lm, lp)), tokens, np.array([4, 1]))


def _compact(mc, p):
    cm = compact.compact(mc, p)
    return cm.config, cm.params


# --------------------------------------------------------------------- training


def _state(corpus, families=("neurons",), epochs=2, **kw):
    mc = models.ModelConfig("lstm", len(corpus.vocab), 8, (8,), {}, families, len(corpus.classes))
    cfg = training.TrainConfig(epochs=epochs, batch_size=16, optimizer="adam", lr=0.01, clip=1.0, dropout=0.0,
                               dtype="float64", **kw)
    return training.init_state(mc, cfg, len(corpus.train), corpus.vocab.to_list())


def test_training_resumes_exactly_and_reshuffles_every_epoch(labelled_dir, tmp_path):
    corpus = labelled.load_labelled(labelled_dir / "train.tsv", labelled_dir / "valid.tsv")
    task = training.Classification(corpus.train, corpus.valid)
    cfg = _state(corpus).config
    first, second = task.batches(cfg, 0), task.batches(cfg, 1)
    assert [b[0].shape for b in first] != [b[0].shape for b in second]          # another order
    assert [b[0].shape for b in task.batches(cfg, 0)] == [b[0].shape for b in first]
    straight = _state(corpus, ("neurons", "preact", "vocab"))
    training.fit(straight, task)
    part = _state(corpus, ("neurons", "preact", "vocab"))
    training.fit(part, task, max_steps=len(first) + 3)
    training.save_checkpoint(tmp_path / "c.npz", part)
    resumed = training.load_checkpoint(tmp_path / "c.npz")
    training.fit(resumed, task)
    assert resumed.step == straight.step
    for a, b in zip(tree.leaves(straight.params), tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    assert "valid_acc" in straight.history[-1] and straight.history[-1]["train_ppl"] is None


def test_training_learns_the_task(labelled_dir):
    """The sentiment word decides the class: after 6 epochs the classifier is far better
    than chance (the majority class is about half)."""
    corpus = labelled.load_labelled(labelled_dir / "train.tsv", labelled_dir / "valid.tsv", labelled_dir / "test.tsv")
    st = _state(corpus, epochs=6, lam1=(0.1,), lam2=(0.1,))
    training.fit(st, training.Classification(corpus.train, corpus.valid))
    r = training.evaluate_classifier(st.model_config, st.params, corpus.test, gates=models.eval_gates(st.params))
    assert r["accuracy"] > 0.9
    assert r["confusion"].sum() == len(corpus.test) and np.trace(r["confusion"]) == round(r["accuracy"] * 80)


# --------------------------------------------------------------------- the command


def _classify_args(d, out, *extra):
    return ["train", "--task", "classify", "--train", str(d / "train.tsv"), "--valid", str(d / "valid.tsv"),
            "--test", str(d / "test.tsv"), "--emb", "8", "--hidden", "8", "--epochs", "2", "--quiet",
            "--timing-seconds", "0", "--out", str(out), *extra]


def test_command_trains_compacts_and_evaluates_a_classifier(labelled_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(_classify_args(labelled_dir, run, "--gates", "neurons,preact,weights,vocab")) == 0
    out = capsys.readouterr().out
    assert "confusion matrix on test" in out and "compaction check: compact model == masked full model" in out
    s = json.loads((run / "summary.json").read_text())
    assert s["task"] == "classify" and s["classes"] == ["neg", "pos"] and s["test_ppl"] is None
    assert 0 <= s["test_acc"] <= 1 and np.sum(s["confusion"]) == 80
    assert set(s["nonzero_weights"]) >= {"full", "kept", "removed_fraction"} and s["vocabulary_kept"] >= 0
    assert {"compact_kernel_1", "full_kernel_1"} <= set(s["timing"])
    small = tmp_path / "small.npz"
    assert cli.main(["compact", str(run / "checkpoint.npz"), "--out", str(small)]) == 0
    results = []
    for model, flags in ((run / "checkpoint.npz", []), (run / "compact.npz", []), (small, ["--numpy"])):
        j = tmp_path / f"e{len(results)}.json"
        assert cli.main(["eval", str(model), str(labelled_dir / "test.tsv"), "--json", str(j), *flags]) == 0
        results.append(json.loads(j.read_text()))
    assert results[0]["accuracy"] == s["test_acc"]
    assert all(r["confusion"] == s["confusion"] for r in results)
    assert results[1]["loss"] == pytest.approx(results[0]["loss"], rel=1e-5)


def test_command_resumes_a_classifier_exactly(labelled_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(_classify_args(labelled_dir, a)) == 0
    assert cli.main(_classify_args(labelled_dir, b, "--epochs", "1")) == 0
    assert cli.main(["train", "--resume", str(b / "checkpoint.npz"), "--epochs", "2", "--quiet",
                     "--timing-seconds", "0"]) == 0
    sa, sb = training.load_checkpoint(a / "checkpoint.npz"), training.load_checkpoint(b / "checkpoint.npz")
    for x, y in zip(tree.leaves(sa.params), tree.leaves(sb.params)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("extra, message", [
    (["--bptt", "5"], "--bptt applies to language models"),
    (["--char"], "--char applies to language models"),
    (["--max-len", "0"], "--max-len must be >= 1"),
    (["--target-macs", "0.5"], "size targets"),
])
def test_bad_classify_options_are_clear_errors(labelled_dir, tmp_path, capsys, extra, message):
    assert cli.main(_classify_args(labelled_dir, tmp_path / "r", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_classify_needs_files_and_lm_refuses_classify_options(labelled_dir, tmp_path, capsys):
    assert cli.main(["train", "--task", "classify", "--quiet", "--out", str(tmp_path / "x")]) == 2
    assert "--task classify needs labelled files" in capsys.readouterr().err
    assert cli.main(["train", "--max-len", "5", "--quiet", "--out", str(tmp_path / "y")]) == 2
    assert "--max-len applies to --task classify" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("pos\tgood\nunlabelled line\n")
    assert cli.main(["train", "--task", "classify", "--train", str(bad), "--quiet", "--out", str(tmp_path / "z")]) == 2
    assert "bad.tsv, line 2: no label" in capsys.readouterr().err
