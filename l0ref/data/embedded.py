"""The embedded default corpus: English prose from Python's own documentation (``pydoc_data``),
so that ``l0ref train`` runs on a machine with no data files."""
from __future__ import annotations

import re

from .text import Corpus, _check_level, corpus_from_lines

DEFAULT_SPLIT = (0.90, 0.05, 0.05)

_HEADING_RULE = re.compile(r"^[*=\-~^\"]{3,}\s*$")
_CODE_CHARS = set("()[]{}=<>+/%#@\\$;|~^")
_FUNCTION_WORDS = frozenset(
    "the a an is are be of to and in for if it this that with or not by as on can".split()
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
_TOKEN = re.compile(r"n't|'[a-z]+|[a-z_][a-z0-9_]*|[0-9]+(?:[.,][0-9]+)*")


def _is_prose(paragraph: str) -> bool:
    """Whether a paragraph of the documentation reads as English rather than code."""
    if ">>>" in paragraph or "::=" in paragraph or paragraph.lstrip().startswith("..."):
        return False
    words = re.findall(r"[A-Za-z]+", paragraph)
    if len(words) < 3 or not any(w in _FUNCTION_WORDS for w in words):
        return False
    visible = [c for c in paragraph if not c.isspace()]
    return sum(c in _CODE_CHARS for c in visible) <= 0.05 * len(visible)


def _normalize_sentence(sentence: str) -> str:
    """Lowercase, PTB-style tokens joined by spaces: numbers -> N, punctuation dropped."""
    s = sentence.lower().replace("’", "'").replace("‘", "'")
    s = re.sub(r"\[\d+\]", " ", s)  # footnote marks
    s = re.sub(r"(\w)n't\b", r"\1 n't", s)
    words = ["N" if w[0].isdigit() else w for w in _TOKEN.findall(s)]
    return " ".join(words)


def _documentation_lines(topics: dict) -> list[str]:
    """The prose of ``topics`` (name -> reST-rendered text), one normalized sentence a line.

    Topics in sorted name order; in each: drop section headings (a line above a rule of
    ``* = - ~ ^ "``), table rows (lines starting ``+`` or ``|``) and paragraphs that read
    as code (``_is_prose``); join each remaining paragraph's lines, split it into
    sentences after ``. ! ?``, normalize each (``_normalize_sentence``), keep those of
    at least 3 words.
    """
    lines: list[str] = []
    for name in sorted(topics):
        raw = topics[name].replace("\r\n", "\n").split("\n")
        kept: list[str] = []
        for i, line in enumerate(raw):
            if _HEADING_RULE.match(line.strip()):
                continue  # rule under a heading
            if i + 1 < len(raw) and raw[i + 1].strip() and _HEADING_RULE.match(raw[i + 1].strip()):
                continue  # heading text
            if line.lstrip().startswith(("+", "|")):
                continue  # table
            kept.append(line)
        for paragraph in re.split(r"\n\s*\n", "\n".join(kept)):
            if not paragraph.strip() or not _is_prose(paragraph):
                continue
            joined = " ".join(paragraph.split())
            for sentence in _SENTENCE_END.split(joined):
                normalized = _normalize_sentence(sentence)
                if len(normalized.split()) >= 3:
                    lines.append(normalized)
    return lines


def default_corpus_lines() -> list[str]:
    """The normalized sentences of the default corpus, one string per sentence.

    The source is ``pydoc_data.topics.topics``: the language reference and library
    topics that ``help()`` shows, about 0.46 MB of English in Python 3.11.  It is part of
    the standard library of CPython 3.10 and later, so the corpus needs no download, and
    the lines are the same on every machine with the same Python version.  The text
    changes a little between Python versions, so the corpus (its sizes, its vocabulary,
    and the perplexities a model reaches on it) does too: record the Python version with
    results.  Raises ``RuntimeError`` when ``pydoc_data`` is missing (some distributions
    strip it), saying how to pass a corpus file instead.
    """
    try:
        from pydoc_data.topics import topics
    except ImportError as err:
        raise RuntimeError(
            "the default corpus is built from the standard-library module pydoc_data, "
            f"which this Python does not have ({err}); pass a corpus file instead: a UTF-8 "
            "text file in the Penn Treebank format (one sentence per line), loaded with "
            "l0ref.data.load_corpus(train_path, valid_path, test_path)"
        ) from None
    return _documentation_lines(topics)


def default_corpus(level: str = "word", max_vocab: int | None = 5000) -> Corpus:
    """The embedded English corpus, split 90/5/5 into train/valid/test by contiguous lines.

    Lines come from ``default_corpus_lines`` (see there for the source and why it varies
    with the Python version).  The first 90% of the sentences train, the next 5%
    validate, the last 5% test.  The vocabulary is built from the training lines and
    capped at ``max_vocab`` (``<unk>`` included; ``None`` for no cap).  At the character
    level the cap applies to characters.
    """
    _check_level(level)
    lines = default_corpus_lines()
    n = len(lines)
    a = int(round(DEFAULT_SPLIT[0] * n))
    b = a + int(round(DEFAULT_SPLIT[1] * n))
    return corpus_from_lines(lines[:a], lines[a:b], lines[b:], level=level, max_vocab=max_vocab)


__all__ = ["DEFAULT_SPLIT", "default_corpus", "default_corpus_lines"]
