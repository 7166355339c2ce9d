"""Language-model data: corpora, vocabularies and batches for truncated BPTT.

The paper (Wen et al., section 4) trains word-level language models on the Penn Treebank
in the format of Mikolov et al.: plain text, one sentence per line, words separated by
spaces, rare words already replaced by ``<unk>``, numbers by ``N``.  This module reads
that format, and a character-level variant of it, into integer arrays; cuts a stream of
ids into ``B`` parallel streams; and walks those streams in windows of ``T`` steps, so
that a recurrent model can carry its state from one window to the next (truncated
backpropagation through time).

Conventions (the paper is silent on all of them; they follow the usual PTB pipelines)::

    word level  line "a b c"  ->  tokens ["a", "b", "c", "<eos>"]        (split on whitespace)
    char level  line "a bc"   ->  tokens ["a", " ", "b", "c", "<eos>"]    (runs of whitespace -> " ")
    vocabulary  index 0 is "<unk>"; then every other token of the training text,
                most frequent first, ties in alphabetical (code point) order
    batches     ids (L,)  ->  batched (N, B), N = L // B, column b = ids[b*N:(b+1)*N]
    windows     inputs batched[i:i+T], targets batched[i+1:i+1+T], i = 0, T, 2T, ...

``embedded.py`` builds a small English corpus from the documentation that ships with
Python (``pydoc_data.topics``), so that training works on a machine with no data files.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

UNK = "<unk>"
EOS = "<eos>"
LEVELS = ("word", "char")


# ---------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------


class Vocab:
    """A fixed list of tokens and the map from token to integer id.

    ``tokens[i]`` is the token of id ``i``.  ``<unk>`` must be among the tokens: ``encode``
    maps every token it does not know to it.  Build one from text with ``build_vocab``;
    save one with ``to_list`` (a JSON-ready list of strings) and restore it with
    ``from_list``.
    """

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        for t in tokens:
            if not isinstance(t, str) or t == "":
                raise ValueError(f"vocabulary tokens must be non-empty strings, got {t!r}")
        index = {t: i for i, t in enumerate(tokens)}
        if len(index) != len(tokens):
            dup = sorted(t for t, c in Counter(tokens).items() if c > 1)
            raise ValueError(f"vocabulary tokens must be unique; repeated: {dup[:10]}")
        if UNK not in index:
            raise ValueError(f"vocabulary must contain the unknown token {UNK!r}")
        self.tokens = tokens
        self.index = index
        self.unk_id = index[UNK]

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self.tokens[:5])
        return f"Vocab({len(self)} tokens: {head}{', ...' if len(self) > 5 else ''})"

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids of ``tokens``, shape (len(tokens),), int64; unknown tokens -> id of ``<unk>``."""
        get, unk = self.index.get, self.unk_id
        return np.fromiter((get(t, unk) for t in tokens), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids`` (any iterable of integers in ``[0, len(self))``)."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
        if ids.size == 0:
            return []
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"decode expects a 1-D sequence of integer ids, got dtype {ids.dtype} and shape {ids.shape}")
        bad = (ids < 0) | (ids >= len(self))
        if bad.any():
            raise ValueError(f"ids out of range [0, {len(self)}): {ids[bad][:10].tolist()}")
        return [self.tokens[i] for i in ids.tolist()]

    def to_list(self) -> list[str]:
        """The tokens in id order: a JSON-ready description of this vocabulary."""
        return list(self.tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> "Vocab":
        """The inverse of ``to_list``."""
        return cls(tokens)


def tokenize(text: str, level: str = "word") -> list[str]:
    """Split ``text`` into tokens, one ``<eos>`` at the end of every line.

    Lines are separated by ``"\\n"`` (``"\\r\\n"`` and ``"\\r"`` count as ``"\\n"``); a final
    newline does not start another line, but every other line, empty ones included,
    ends in ``<eos>`` (as in the PyTorch word-language-model example).

    ``level="word"``: the whitespace-separated words of each line.
    ``level="char"``: the characters of each line after stripping it and collapsing
    each run of whitespace into one space.
    """
    _check_level(level)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    tokens: list[str] = []
    for line in lines:
        if level == "word":
            tokens.extend(line.split())
        else:
            tokens.extend(" ".join(line.split()))
        tokens.append(EOS)
    return tokens


def build_vocab(tokens: Iterable[str], max_size: int | None = None) -> Vocab:
    """The vocabulary of ``tokens``: ``<unk>`` first, then by frequency, ties alphabetical.

    ``max_size`` (counting ``<unk>``) keeps the ``max_size - 1`` most frequent other tokens;
    the rest will encode as ``<unk>``.  The order depends only on the counts, never on
    the order of ``tokens`` or on hashing, so it is the same on every machine.
    """
    if max_size is not None and (not isinstance(max_size, (int, np.integer)) or isinstance(max_size, bool) or max_size < 1):
        raise ValueError(f"max_size must be a positive integer or None, got {max_size!r}")
    counts = Counter(tokens)
    counts.pop(UNK, None)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    if max_size is not None:
        ranked = ranked[: int(max_size) - 1]
    return Vocab([UNK] + ranked)


# ---------------------------------------------------------------------------------------
# Files and corpora
# ---------------------------------------------------------------------------------------


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file (a leading byte-order mark is dropped).

    Raises ``FileNotFoundError`` if ``path`` does not exist, and ``ValueError`` if it is
    not a regular file, is empty (or only whitespace), or is not valid UTF-8.  Every
    message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus file not found: {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"corpus path is not a regular file: {str(path)!r}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"corpus file {str(path)!r} is not valid UTF-8 text "
            f"(byte {data[err.start]:#04x} at offset {err.start}: {err.reason}); "
            "convert it to UTF-8, e.g. with iconv"
        ) from None
    if not text.strip():
        raise ValueError(f"corpus file {str(path)!r} is empty (no non-whitespace characters)")
    return text


@dataclass
class Corpus:
    """A vocabulary and the id arrays of up to three splits, each of shape (L,), int64.

    ``valid`` and ``test`` may be ``None``.  The vocabulary comes from ``train`` alone;
    tokens of the other splits that it lacks are ``<unk>``.
    """

    vocab: Vocab
    train: np.ndarray
    valid: np.ndarray | None = None
    test: np.ndarray | None = None
    level: str = "word"

    def summary(self) -> dict:
        """Sizes for a log line: vocabulary size, and per split its tokens and ``<unk>`` rate.

        The ``<unk>`` rate counts every ``<unk>`` id, whether the text had ``<unk>``
        written in it (as PTB does) or the word was missing from the vocabulary.
        """
        out: dict = {"level": self.level, "vocab_size": len(self.vocab)}
        for name in ("train", "valid", "test"):
            ids = getattr(self, name)
            if ids is not None:
                out[f"{name}_tokens"] = int(ids.size)
                out[f"{name}_unk_rate"] = unk_rate(ids, self.vocab)
        return out


def unk_rate(ids: np.ndarray, vocab: Vocab) -> float:
    """Fraction of ``ids`` that are ``<unk>`` (0.0 for an empty array)."""
    ids = np.asarray(ids)
    return float(np.mean(ids == vocab.unk_id)) if ids.size else 0.0


def load_corpus(
    train_path: str | Path,
    valid_path: str | Path | None = None,
    test_path: str | Path | None = None,
    level: str = "word",
    max_vocab: int | None = None,
) -> Corpus:
    """Read PTB-format text files into a ``Corpus``; the vocabulary is built from ``train_path``.

    ``level`` is ``"word"`` or ``"char"`` (see ``tokenize``); ``max_vocab`` caps the
    vocabulary size, ``<unk>`` included (see ``build_vocab``).
    """
    _check_level(level)
    train_tokens = tokenize(read_text(train_path), level)
    vocab = build_vocab(train_tokens, max_vocab)

    def load(path):
        return None if path is None else vocab.encode(tokenize(read_text(path), level))

    return Corpus(vocab, vocab.encode(train_tokens), load(valid_path), load(test_path), level)


def corpus_from_lines(
    train: Sequence[str],
    valid: Sequence[str] | None = None,
    test: Sequence[str] | None = None,
    level: str = "word",
    max_vocab: int | None = None,
) -> Corpus:
    """Like ``load_corpus``, from lists of lines (strings without newlines) instead of files."""
    _check_level(level)
    if not train:
        raise ValueError("the training split has no lines")
    train_tokens = tokenize("\n".join(train), level)
    vocab = build_vocab(train_tokens, max_vocab)

    def load(lines):
        return None if lines is None else vocab.encode(tokenize("\n".join(lines), level))

    return Corpus(vocab, vocab.encode(train_tokens), load(valid), load(test), level)


# ---------------------------------------------------------------------------------------
# Batches for truncated BPTT
# ---------------------------------------------------------------------------------------


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut a stream of ids into ``batch_size`` contiguous streams, time-major.

    ids (L,) -> batched (N, B) with ``N = L // B``: column ``b`` is ``ids[b*N:(b+1)*N]``;
    the last ``L - N*B`` ids are dropped.  Row ``t`` is time step ``t`` of every stream.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"batchify expects a 1-D integer array of ids, got dtype {ids.dtype} and shape {ids.shape}")
    _check_positive_int(batch_size, "batch_size")
    n = ids.size // batch_size
    if n == 0:
        raise ValueError(f"corpus of {ids.size} tokens is too short for batch_size={batch_size}")
    return np.ascontiguousarray(ids[: n * batch_size].reshape(batch_size, n).T)  # (N, B)


def min_tokens(batch_size: int, bptt: int) -> int:
    """Fewest tokens that give one full window: ``batch_size * (bptt + 1)``.

    Each stream needs ``bptt`` input steps plus one more step for the last target.
    """
    return batch_size * (bptt + 1)


def windows(batched: np.ndarray, bptt: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Windows of ``bptt`` consecutive steps over ``batched`` (N, B), in order.

    Yields ``(inputs, targets)``, both (T, B) with ``T = bptt`` (the last window may be
    shorter, never empty): ``inputs = batched[i:i+T]`` and ``targets = batched[i+1:i+1+T]``
    for ``i = 0, bptt, 2*bptt, ...``, so every target is the input's next token in the same
    stream.  Window ``k+1`` starts where window ``k`` stopped, so a model's final state on
    window ``k`` is the right initial state for window ``k+1``.  Together the windows use
    inputs ``batched[:-1]`` and targets ``batched[1:]``; there are ``ceil((N - 1) / bptt)``.

    Raises ``ValueError`` at once (not at the first ``next``) unless ``N >= bptt + 1``,
    that is, unless the corpus had at least ``min_tokens(B, bptt)`` tokens.
    """
    batched = np.asarray(batched)
    if batched.ndim != 2:
        raise ValueError(f"windows expects batched ids of shape (N, B), got shape {batched.shape}")
    _check_positive_int(bptt, "bptt")
    n, b = batched.shape
    if n < bptt + 1:
        raise ValueError(
            f"corpus too short: each of the {b} streams has {n} steps, but a window of "
            f"bptt={bptt} needs {bptt + 1}; give at least batch_size * (bptt + 1) = "
            f"{min_tokens(b, bptt)} tokens, or a smaller batch_size or bptt"
        )

    def generate():
        for i in range(0, n - 1, bptt):
            t = min(bptt, n - 1 - i)
            yield batched[i : i + t], batched[i + 1 : i + 1 + t]  # (T, B), (T, B)

    return generate()


# ---------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


def _check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
