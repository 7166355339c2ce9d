"""Tests of l0ref.data: tokens, vocabularies, corpus files, BPTT batches, the default corpus."""
from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l0ref import data
from l0ref.data import EOS, UNK

WORDS = st.text(alphabet="abcxyz'-", min_size=1, max_size=4)


def write(tmp_path, name, content, mode="w"):
    path = tmp_path / name
    if mode == "w":
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


# --- tokens and vocabularies ------------------------------------------------------------


def test_tokenize_word_appends_eos_to_every_line():
    text = " the cat  sat \n\na dog\r\nran"
    assert data.tokenize(text) == ["the", "cat", "sat", EOS, EOS, "a", "dog", EOS, "ran", EOS]
    # a final newline does not make an extra empty line
    assert data.tokenize("a b\n") == data.tokenize("a b") == ["a", "b", EOS]


def test_tokenize_char_level_collapses_whitespace_and_ends_lines():
    assert data.tokenize("  ab  c\nd\n", level="char") == ["a", "b", " ", "c", EOS, "d", EOS]


def test_tokenize_rejects_unknown_level():
    with pytest.raises(ValueError, match="level"):
        data.tokenize("a b", level="byte")


def test_build_vocab_puts_unk_first_then_frequency_then_alphabet():
    tokens = "b a c a b a d".split() + [UNK, UNK, UNK, UNK]
    vocab = data.build_vocab(tokens)
    assert vocab.tokens == [UNK, "a", "b", "c", "d"]
    assert vocab.unk_id == 0
    # independent of the order of the input tokens
    assert data.build_vocab(reversed(tokens)).tokens == vocab.tokens


def test_build_vocab_max_size_keeps_the_most_frequent_and_maps_the_rest_to_unk():
    tokens = "a a a b b c".split()
    vocab = data.build_vocab(tokens, max_size=3)
    assert vocab.tokens == [UNK, "a", "b"]
    assert vocab.decode(vocab.encode(tokens)) == ["a", "a", "a", "b", "b", UNK]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_build_vocab_rejects_bad_max_size(bad):
    with pytest.raises(ValueError, match="max_size"):
        data.build_vocab(["a"], max_size=bad)


@settings(max_examples=40)
@given(st.lists(WORDS, min_size=1, max_size=40))
def test_vocab_round_trip(tokens):
    vocab = data.build_vocab(tokens)
    ids = vocab.encode(tokens)
    assert ids.dtype == np.int64 and ids.shape == (len(tokens),)
    assert vocab.decode(ids) == tokens
    assert UNK in vocab and len(vocab) == len(set(tokens) | {UNK})
    restored = data.Vocab.from_list(json.loads(json.dumps(vocab.to_list())))
    assert restored == vocab
    np.testing.assert_array_equal(restored.encode(tokens), ids)


def test_vocab_encodes_unknown_tokens_as_unk():
    vocab = data.Vocab([UNK, EOS, "a"])
    np.testing.assert_array_equal(vocab.encode(["a", "zzz", EOS]), [2, 0, 1])
    assert vocab.encode([]).shape == (0,)


def test_vocab_rejects_duplicates_missing_unk_and_empty_tokens():
    with pytest.raises(ValueError, match="unique"):
        data.Vocab([UNK, "a", "a"])
    with pytest.raises(ValueError, match="unknown token"):
        data.Vocab(["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        data.Vocab([UNK, ""])


def test_decode_rejects_out_of_range_ids():
    vocab = data.Vocab([UNK, "a"])
    with pytest.raises(ValueError, match="out of range"):
        vocab.decode([0, 2])
    with pytest.raises(ValueError, match="out of range"):
        vocab.decode([-1])


# --- files and corpora ------------------------------------------------------------------


def test_load_corpus_word_level_maps_unseen_words_to_unk(tmp_path):
    train = write(tmp_path, "train.txt", " the cat sat \n the dog sat \n")
    valid = write(tmp_path, "valid.txt", "the bird sat\n")
    test = write(tmp_path, "test.txt", "a cat <unk>\n")
    corpus = data.load_corpus(train, valid, test)
    vocab = corpus.vocab
    assert vocab.tokens == [UNK, EOS, "sat", "the", "cat", "dog"]
    assert vocab.decode(corpus.train) == ["the", "cat", "sat", EOS, "the", "dog", "sat", EOS]
    assert vocab.decode(corpus.valid) == ["the", UNK, "sat", EOS]
    assert vocab.decode(corpus.test) == [UNK, "cat", UNK, EOS]
    for ids in (corpus.train, corpus.valid, corpus.test):
        assert ids.dtype == np.int64 and ids.ndim == 1
    summary = corpus.summary()
    assert summary["train_tokens"] == 8 and summary["vocab_size"] == 6
    assert summary["valid_unk_rate"] == pytest.approx(1 / 4)
    assert summary["test_unk_rate"] == pytest.approx(2 / 4)


def test_load_corpus_max_vocab_and_optional_splits(tmp_path):
    train = write(tmp_path, "train.txt", "a a a b b c\n")
    corpus = data.load_corpus(train, max_vocab=3)
    assert corpus.valid is None and corpus.test is None
    assert corpus.vocab.tokens == [UNK, "a", "b"]  # <eos> (count 1) is cut like any rare token
    assert corpus.vocab.decode(corpus.train) == ["a", "a", "a", "b", "b", UNK, UNK]


def test_load_corpus_char_level(tmp_path):
    train = write(tmp_path, "train.txt", "ab a\nba\n")
    test = write(tmp_path, "test.txt", "abz\n")
    corpus = data.load_corpus(train, test_path=test, level="char")
    assert corpus.level == "char"
    assert corpus.vocab.tokens == [UNK, "a", EOS, "b", " "]  # ties: "<" sorts before "b"
    assert corpus.vocab.decode(corpus.train) == ["a", "b", " ", "a", EOS, "b", "a", EOS]
    assert corpus.vocab.decode(corpus.test) == ["a", "b", UNK, EOS]


def test_read_text_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        data.read_text(path)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        data.load_corpus(write(tmp_path, "train.txt", "a\n"), valid_path=path)


@pytest.mark.parametrize("content", ["", "  \n\n \t\n"])
def test_read_text_empty_file_is_an_error(tmp_path, content):
    path = write(tmp_path, "empty.txt", content)
    with pytest.raises(ValueError, match=r"empty\.txt.*empty"):
        data.read_text(path)


def test_read_text_non_utf8_file_is_an_error(tmp_path):
    path = write(tmp_path, "latin1.txt", "caf\u00e9 au lait\n".encode("latin-1"), mode="wb")
    with pytest.raises(ValueError, match=r"latin1\.txt.*not valid UTF-8.*offset 3"):
        data.read_text(path)


def test_read_text_directory_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        data.read_text(tmp_path)


def test_read_text_drops_a_byte_order_mark(tmp_path):
    path = write(tmp_path, "bom.txt", b"\xef\xbb\xbfhello world\n", mode="wb")
    assert data.read_text(path) == "hello world\n"


# --- batches for truncated BPTT ----------------------------------------------------------


@st.composite
def stream_and_batching(draw):
    """A stream of distinct ids (so positions can be told apart), B and T that fit it."""
    batch = draw(st.integers(1, 5))
    bptt = draw(st.integers(1, 6))
    extra = draw(st.integers(0, 40))
    length = data.min_tokens(batch, bptt) + extra
    return np.arange(length, dtype=np.int64) * 7 + 3, batch, bptt


@settings(max_examples=60)
@given(stream_and_batching())
def test_batchify_cuts_contiguous_streams(problem):
    ids, batch, _ = problem
    batched = data.batchify(ids, batch)
    n = len(ids) // batch
    assert batched.shape == (n, batch) and batched.dtype == ids.dtype
    for b in range(batch):
        np.testing.assert_array_equal(batched[:, b], ids[b * n : (b + 1) * n])


@settings(max_examples=60)
@given(stream_and_batching())
def test_windows_shift_targets_by_one_and_recover_each_stream(problem):
    ids, batch, bptt = problem
    batched = data.batchify(ids, batch)
    n = batched.shape[0]
    pairs = list(data.windows(batched, bptt))
    assert len(pairs) == -(-(n - 1) // bptt)
    for k, (x, y) in enumerate(pairs):
        assert x.shape == y.shape and x.shape[1] == batch
        assert x.shape[0] == bptt or k == len(pairs) - 1
        assert 1 <= x.shape[0] <= bptt
        np.testing.assert_array_equal(x[1:], y[:-1])  # the target of step t is the input of t + 1
    inputs = np.concatenate([x for x, _ in pairs])
    targets = np.concatenate([y for _, y in pairs])
    np.testing.assert_array_equal(inputs, batched[:-1])
    np.testing.assert_array_equal(targets, batched[1:])


@settings(max_examples=60)
@given(stream_and_batching())
def test_windows_let_state_carry_across_windows(problem):
    ids, batch, bptt = problem
    batched = data.batchify(ids, batch)
    pairs = list(data.windows(batched, bptt))
    # window k + 1 starts, in every stream, with the token that followed window k
    for (_, y_prev), (x_next, _) in zip(pairs, pairs[1:]):
        np.testing.assert_array_equal(x_next[0], y_prev[-1])

    # a toy recurrence run window by window, carrying its state, equals one run over all
    def run(x, h):
        for x_t in x:  # (B,)
            h = (h * 31 + x_t) % 1_000_003
        return h

    h = np.zeros(batch, dtype=np.int64)
    for x, _ in pairs:
        h = run(x, h)
    np.testing.assert_array_equal(h, run(batched[:-1], np.zeros(batch, dtype=np.int64)))


def test_windows_need_batch_size_times_bptt_plus_one_tokens():
    batch, bptt = 4, 5
    need = data.min_tokens(batch, bptt)
    assert need == 24
    x, y = next(data.windows(data.batchify(np.arange(need), batch), bptt))
    assert x.shape == y.shape == (bptt, batch)
    short = data.batchify(np.arange(need - 1), batch)
    with pytest.raises(ValueError, match=r"too short.*at least batch_size \* \(bptt \+ 1\) = 24 tokens"):
        data.windows(short, bptt)  # raised at once, before iteration


def test_batchify_rejects_too_short_corpus_and_bad_arguments():
    with pytest.raises(ValueError, match="too short"):
        data.batchify(np.arange(3), 4)
    with pytest.raises(ValueError, match="batch_size"):
        data.batchify(np.arange(10), 0)
    with pytest.raises(ValueError, match="1-D integer"):
        data.batchify(np.zeros(10), 2)
    with pytest.raises(ValueError, match="bptt"):
        data.windows(np.zeros((10, 2), dtype=np.int64), 0)
    with pytest.raises(ValueError, match=r"\(N, B\)"):
        data.windows(np.arange(10), 2)


# --- the embedded default corpus ----------------------------------------------------------


@pytest.fixture(scope="module")
def default_word():
    return data.default_corpus()


def test_default_corpus_is_deterministic(default_word):
    again = data.default_corpus()
    assert again.vocab == default_word.vocab
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(again, name), getattr(default_word, name))


def test_default_corpus_is_real_english_of_useful_size(default_word):
    corpus = default_word
    # pydoc_data.topics holds only about 64k alphabetic words (Python 3.11), so the 100k
    # training tokens one would like are out of reach; about 52k remain after cleaning.
    assert corpus.train.size >= 45_000
    assert corpus.valid.size >= 1_500 and corpus.test.size >= 1_500
    assert 1_000 <= len(corpus.vocab) <= 5_000
    assert corpus.vocab.tokens[0] == UNK and corpus.vocab.tokens[1] == "the"
    assert {"a", "of", "is", "and", "to", EOS} <= set(corpus.vocab.tokens[:12])
    assert corpus.summary()["test_unk_rate"] < 0.1
    # PTB-like normalization: lowercase words, numbers as N, no punctuation tokens
    token = re.compile(r"^(N|n't|'[a-z]+|[a-z_][a-z0-9_]*)$")
    assert all(token.match(t) for t in corpus.vocab.tokens if t not in (UNK, EOS))


def test_default_corpus_splits_are_contiguous_90_5_5():
    lines = data.default_corpus_lines()
    corpus = data.default_corpus(max_vocab=None)
    n_train = corpus.vocab.decode(corpus.train).count(EOS)
    n_valid = corpus.vocab.decode(corpus.valid).count(EOS)
    n_test = corpus.vocab.decode(corpus.test).count(EOS)
    assert n_train + n_valid + n_test == len(lines)
    assert abs(n_train - 0.9 * len(lines)) <= 1 and abs(n_valid - 0.05 * len(lines)) <= 1
    assert corpus.vocab.decode(corpus.train[: len(lines[0].split()) + 1]) == lines[0].split() + [EOS]
    assert corpus.vocab.decode(corpus.test)[-len(lines[-1].split()) - 1 :] == lines[-1].split() + [EOS]


def test_default_corpus_max_vocab_caps_the_vocabulary():
    corpus = data.default_corpus(max_vocab=100)
    assert len(corpus.vocab) == 100
    assert 0.1 < corpus.summary()["train_unk_rate"] < 0.9


def test_default_corpus_char_level():
    corpus = data.default_corpus(level="char")
    assert corpus.level == "char"
    assert corpus.train.size >= 200_000
    assert len(corpus.vocab) <= 60 and " " in corpus.vocab and "e" in corpus.vocab
    assert corpus.vocab.tokens[1] == " "


def test_default_corpus_without_pydoc_data_says_how_to_pass_a_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)  # makes the import fail
    with pytest.raises(RuntimeError, match=r"pydoc_data.*corpus file.*load_corpus"):
        data.default_corpus()
