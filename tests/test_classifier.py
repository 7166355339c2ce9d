"""The document classifier (``models/classifier.py``): its hand-written backward against
float64 central differences, the exactness of its padding, and its input checks.

As in ``test_model.py`` the checked function is the mean loss times B, every parameter
and every gate group of every family drawn in (``families="any"``), gates per document
or shared, with exact 0s and 1s, and dropout on or off; the documents have drawn lengths
in [1, T], right-padded.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref import models, tree
from l0ref.cells import CELLS
from l0ref.models import classifier
from tests.gradcheck import check_gradients
from tests.strategies import classifier_problem, token_arrays, values
from tests.test_model import as_families, named_grads, named_inputs


@pytest.mark.parametrize("name", sorted(CELLS))
@settings(max_examples=12)
@given(data=st.data())
def test_backward_matches_finite_differences(name, data):
    p = data.draw(classifier_problem(name, families="any"))
    dropout = data.draw(st.one_of(st.just(0.0), values(0.1, 0.6)), label="dropout")
    seed = data.draw(st.integers(0, 2**32 - 1), label="dropout seed")
    config, params, gates, B = p["config"], p["params"], p["gates"], p["B"]

    def run():
        return classifier.forward(config, params, p["tokens"], p["lengths"], p["labels"], gates, dropout=dropout,
                                  rng=np.random.default_rng(seed))

    grads = classifier.backward(run()[1])
    assert {f: [np.shape(g) for g in gs] for f, gs in grads["gates"].items()} == \
        {f: [g.shape for g in gs] for f, gs in as_families(gates).items()}
    check_gradients(lambda: run()[0] * B, named_inputs(params, gates), named_grads(grads, B))


def _row(gates, b: int, B: int):
    """Document b's gates: row b of every per-document array, the shared ones as they are."""
    def pick(a):
        return a[b:b + 1] if a.ndim == 2 else a          # drawn per document: (B, size)
    if isinstance(gates, dict):
        return {f: [pick(a) if f != "weights" else a for a in gs] for f, gs in gates.items()}
    return [pick(a) for a in gates]


@pytest.mark.parametrize("name", sorted(CELLS))
@settings(max_examples=15)
@given(data=st.data())
def test_padding_changes_nothing(name, data):
    """A document gives, padded in a batch, what it gives alone (its own length, no
    padding): log-probabilities, loss and gradients (the batch's gradient is the mean of
    the documents' own, since the loss is the batch mean).  Equal to rounding (1e-13: the
    products have other shapes alone, so BLAS may add in another order)."""
    p = data.draw(classifier_problem(name, families="any", per_sequence=True))
    config, params, gates, B = p["config"], p["params"], p["gates"], p["B"]
    tokens, lengths, labels = p["tokens"], p["lengths"], p["labels"]
    logp = classifier.log_probs(config, params, tokens, lengths, gates)
    loss, cache = classifier.forward(config, params, tokens, lengths, labels, gates)
    grads = classifier.backward(cache)
    alone_grads = []
    for b in range(B):
        n = int(lengths[b])
        own = (tokens[:n, b:b + 1], lengths[b:b + 1], labels[b:b + 1], _row(gates, b, B))
        np.testing.assert_allclose(classifier.log_probs(config, params, *own[:2], own[3]), logp[b:b + 1],
                                   rtol=1e-13, atol=1e-14)
        alone_grads.append(classifier.backward(classifier.forward(config, params, *own)[1]))
    mean = [sum(a) / B for a in zip(*(tree.leaves({k: v for k, v in g.items() if k != "gates"})
                                      for g in alone_grads))]
    for a, b in zip(tree.leaves({k: v for k, v in grads.items() if k != "gates"}), mean):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(loss, -np.mean(logp[np.arange(B), labels]), rtol=1e-13)


@pytest.mark.parametrize("name", sorted(CELLS))
@settings(max_examples=15)
@given(data=st.data())
def test_padding_values_never_read(name, data):
    """Whatever the padding holds, the results are bit for bit the same (same shapes)."""
    p = data.draw(classifier_problem(name, families="any"))
    config, params, gates = p["config"], p["params"], p["gates"]
    tokens, lengths, labels = p["tokens"], p["lengths"], p["labels"]
    other = tokens.copy()
    noise = data.draw(token_arrays(tokens.shape, config.vocab_size), label="padding")
    pad = np.arange(tokens.shape[0])[:, None] >= lengths[None, :]
    other[pad] = noise[pad]
    a = classifier.forward(config, params, tokens, lengths, labels, gates)
    b = classifier.forward(config, params, other, lengths, labels, gates)
    assert a[0] == b[0]
    for x, y in zip(tree.leaves(classifier.backward(a[1])), tree.leaves(classifier.backward(b[1]))):
        np.testing.assert_array_equal(x, y)


def test_config_and_params_of_a_classifier():
    mc = models.ModelConfig("lstm", 7, 3, (4,), n_classes=3)
    assert mc.task == "classify" and mc.n_outputs == 3
    assert models.ModelConfig.from_dict(mc.to_dict()) == mc
    assert "n_classes" not in models.ModelConfig("lstm", 7, 3, (4,)).to_dict()
    params = models.init_params(mc, np.random.default_rng(0), np.float64)
    assert params["out_W"].shape == (3, 4) and params["out_b"].shape == (3,)
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2"):
        models.ModelConfig("lstm", 7, 3, (4,), n_classes=1)


def test_bad_inputs_are_named():
    mc = models.ModelConfig("gru", 7, 3, (4,), n_classes=3)
    params = models.init_params(mc, np.random.default_rng(0), np.float64)
    tokens = np.zeros((5, 2), np.int64)
    good = dict(lengths=np.array([5, 2]), labels=np.array([0, 2]))
    for bad, match in [({"lengths": np.array([5, 0])}, "lengths must lie in"),
                       ({"lengths": np.array([6, 2])}, "lengths must lie in"),
                       ({"lengths": np.array([5])}, "lengths has shape"),
                       ({"lengths": np.array([5.0, 2.0])}, "lengths must be integers"),
                       ({"labels": np.array([0, 3])}, "outside \\[0, 3\\)"),
                       ({"labels": np.array([0])}, "labels must be integer class ids")]:
        kw = {**good, **bad}
        with pytest.raises(ValueError, match=match):
            classifier.forward(mc, params, tokens, kw["lengths"], kw["labels"])
    lm = models.ModelConfig("gru", 7, 3, (4,))
    with pytest.raises(ValueError, match="language model"):
        classifier.log_probs(lm, models.init_params(lm, np.random.default_rng(0)), tokens, good["lengths"])
    with pytest.raises(ValueError, match="out_W has shape"):
        models.check_params(mc, models.init_params(lm, np.random.default_rng(0), np.float64))
