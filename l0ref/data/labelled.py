"""Labelled text for classification: files, vocabulary, classes and padded batches.

Lobacheva et al. (section 4.1) classify whole documents (IMDB reviews, AG News articles)
by the last hidden state of an LSTM that read their first 200 words.  This module turns
labelled text files into what such a classifier reads::

    files       one document a line, in either format (detected per line):
                  "label<TAB>text"            (the shared data's format)
                  "__label__X text"           (fastText's; one label per document)
    tokens      lowercased (unless told otherwise), then the words: runs of letters and
                digits, with an apostrophe inside a word kept ("don't"), and every other
                non-space character alone ("!", ",", "-"):  "Don't stop!" -> don't stop !
    truncation  the first ``max_len`` tokens of each document (as the paper keeps the first 200)
    vocabulary  index 0 is "<unk>"; then the training documents' tokens, most frequent
                first, ties alphabetical, at most ``max_vocab`` entries with "<unk>"
    classes     the training file's labels, sorted (class id = index in that list)
    batches     documents of similar length together (sorted by length, cut into batches
                of ``batch_size``), right-padded to the longest of each batch with id 0;
                ``lengths`` says where each document ends (``models.classifier``
                reads the state at its last token, so the padding never reaches it)

Errors name the file and line: a line with no label or no text, a document that is empty
after tokenization, a label in valid/test that the training file never had, a file that
is not UTF-8 (``text.read_text``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .text import UNK, Vocab, build_vocab, read_text

FASTTEXT_PREFIX = "__label__"
TOKEN_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_")
PAD_ID = 0          #: the id padding positions hold (any id would do: they are never read)


def tokenize_document(text: str, lowercase: bool = True) -> list[str]:
    """The tokens of one document (module docstring: words, and punctuation marks alone)."""
    if lowercase:
        text = text.lower()
    return TOKEN_RE.findall(text)


def parse_line(line: str, where: str) -> tuple[str, str]:
    """``(label, text)`` of one line in either format; ``ValueError`` naming ``where``."""
    if line.startswith(FASTTEXT_PREFIX):
        head, _, text = line.partition(" ")
        label = head[len(FASTTEXT_PREFIX):]
        if not label:
            raise ValueError(f"{where}: '{FASTTEXT_PREFIX}' with no label name")
        if text.startswith(FASTTEXT_PREFIX):
            raise ValueError(f"{where}: more than one fastText label; l0ref classifies into one class per document")
    elif "\t" in line:
        label, _, text = line.partition("\t")
        label = label.strip()
        if not label:
            raise ValueError(f"{where}: empty label before the tab")
    else:
        raise ValueError(f"{where}: no label (expected 'label<TAB>text' or '{FASTTEXT_PREFIX}X text')")
    if not text.strip():
        raise ValueError(f"{where}: label {label!r} with no text")
    return label, text


def parse_labelled(text: str, source: str, lowercase: bool = True) -> tuple[list[str], list[list[str]]]:
    """``(labels, documents)`` of labelled text: one label and one token list per
    non-blank line.  Every error names ``source`` and the line."""
    labels, docs = [], []
    for i, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        if not line.strip():
            continue
        where = f"{source}, line {i}"
        label, body = parse_line(line, where)
        tokens = tokenize_document(body, lowercase)
        if not tokens:
            raise ValueError(f"{where}: the document is empty after tokenization ({body.strip()[:40]!r})")
        labels.append(label)
        docs.append(tokens)
    if not docs:
        raise ValueError(f"{source}: no labelled documents")
    return labels, docs


def read_labelled(path, lowercase: bool = True) -> tuple[list[str], list[list[str]]]:
    """:func:`parse_labelled` of a UTF-8 file (``text.read_text``: missing, empty or
    undecodable files are errors that name it)."""
    return parse_labelled(read_text(path), str(path), lowercase)


@dataclass
class Split:
    """Documents as id arrays (each (length,), int64) and their class ids (N,)."""

    docs: list
    labels: np.ndarray
    truncated: int = 0                 #: documents longer than ``max_len`` (cut)

    def __len__(self) -> int:
        return len(self.docs)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([d.size for d in self.docs], np.int64)

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())


@dataclass
class LabelledCorpus:
    """Train/valid/test splits, the vocabulary and the classes of a classification task."""

    vocab: Vocab
    classes: list
    train: Split
    valid: Split | None = None
    test: Split | None = None
    settings: dict = field(default_factory=dict)   #: max_vocab, max_len, lowercase

    def summary(self) -> dict:
        out = {"vocab_size": len(self.vocab), "classes": list(self.classes), **self.settings}
        for name in ("train", "valid", "test"):
            s = getattr(self, name)
            if s is not None:
                out[f"{name}_docs"] = len(s)
                out[f"{name}_tokens"] = s.n_tokens
                out[f"{name}_truncated"] = s.truncated
                out[f"{name}_unk_rate"] = unk_rate(s, self.vocab)
        return out


def unk_rate(split: Split, vocab: Vocab) -> float:
    """Fraction of a split's tokens that are ``<unk>``."""
    n = split.n_tokens
    return sum(int(np.count_nonzero(d == vocab.unk_id)) for d in split.docs) / n if n else 0.0


def encode_split(labels, docs, vocab: Vocab, classes, max_len: int | None, name: str) -> Split:
    """Ids and class ids of read documents; a label outside ``classes`` is an error."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"{name}: labels {unknown[:5]} do not occur in the training file "
                         f"(its classes: {list(classes)[:10]})")
    ids, truncated = [], 0
    for tokens in docs:
        if max_len is not None and len(tokens) > max_len:
            tokens, truncated = tokens[:max_len], truncated + 1
        ids.append(vocab.encode(tokens))
    return Split(ids, np.array([index[c] for c in labels], np.int64), truncated)


def load_labelled(train, valid=None, test=None, *, max_vocab: int | None = None, max_len: int | None = 200,
                  lowercase: bool = True) -> LabelledCorpus:
    """Read the files, build the vocabulary and classes from ``train``, encode all splits."""
    read = {name: None if path is None else (read_labelled(path, lowercase), str(path))
            for name, path in (("train", train), ("valid", valid), ("test", test))}
    return build_labelled(read, max_vocab=max_vocab, max_len=max_len, lowercase=lowercase)


def labelled_from_lines(train_lines, valid_lines=None, test_lines=None, *, max_vocab: int | None = None,
                        max_len: int | None = 200, lowercase: bool = True) -> LabelledCorpus:
    """:func:`load_labelled` on lists of lines (strings without newlines) instead of files."""
    read = {name: None if lines is None else (parse_labelled("\n".join(lines), name, lowercase), name)
            for name, lines in (("train", train_lines), ("valid", valid_lines), ("test", test_lines))}
    return build_labelled(read, max_vocab=max_vocab, max_len=max_len, lowercase=lowercase)


def build_labelled(read: dict, *, max_vocab, max_len, lowercase) -> LabelledCorpus:
    """The corpus of parsed splits ``{name: ((labels, docs), source) or None}``: vocabulary
    and classes from ``train``, every split encoded and truncated."""
    if max_vocab is not None and (not isinstance(max_vocab, (int, np.integer)) or max_vocab < 2):
        raise ValueError(f"max_vocab must be an integer >= 2 (<unk> and one word), got {max_vocab!r}")
    if max_len is not None and (not isinstance(max_len, (int, np.integer)) or max_len < 1):
        raise ValueError(f"max_len must be a positive integer or None, got {max_len!r}")
    (labels, docs), source = read["train"]
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"{source}: every document has the label {classes[0]!r}; a classifier needs two classes")
    cut = docs if max_len is None else [d[:max_len] for d in docs]
    vocab = build_vocab((t for d in cut for t in d), max_vocab)
    splits = {name: encode_split(*r[0], vocab, classes, max_len, r[1]) for name, r in read.items() if r is not None}
    settings = {"max_vocab": max_vocab, "max_len": max_len, "lowercase": bool(lowercase)}
    return LabelledCorpus(vocab, classes, settings=settings, **splits)


def pad(docs, order) -> tuple[np.ndarray, np.ndarray]:
    """The documents ``docs[i] for i in order`` as ``(tokens (T, B), lengths (B,))``,
    right-padded with :data:`PAD_ID` to the longest, T = max length."""
    order = np.asarray(order, np.int64)
    lengths = np.array([docs[i].size for i in order], np.int64)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError("a batch needs at least one document, each with at least one token")
    tokens = np.full((int(lengths.max()), order.size), PAD_ID, np.int64)
    for b, i in enumerate(order):
        tokens[: lengths[b], b] = docs[i]
    return tokens, lengths


def length_batches(lengths, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Document indices in batches of ``batch_size`` (the last may be smaller) of similar
    lengths: sorted by length (ties by index), cut, then the batches' order shuffled with
    ``rng`` (kept in length order without one)."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, order.size, batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


__all__ = ["FASTTEXT_PREFIX", "PAD_ID", "UNK", "LabelledCorpus", "Split", "tokenize_document", "parse_line",
           "parse_labelled", "read_labelled", "encode_split", "load_labelled", "build_labelled", "labelled_from_lines", "pad", "length_batches",
           "unk_rate"]
