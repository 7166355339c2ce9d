"""Data: PTB-format text corpora, vocabularies and BPTT batches (``text.py``), and the embedded
default corpus built from Python's own documentation (``embedded.py``)."""
from .embedded import DEFAULT_SPLIT, default_corpus, default_corpus_lines
from .text import (EOS, LEVELS, UNK, Corpus, Vocab, batchify, build_vocab, corpus_from_lines, load_corpus,
                   min_tokens, read_text, tokenize, unk_rate, windows)

__all__ = ["DEFAULT_SPLIT", "default_corpus", "default_corpus_lines", "EOS", "LEVELS", "UNK", "Corpus", "Vocab",
           "batchify", "build_vocab", "corpus_from_lines", "load_corpus", "min_tokens", "read_text", "tokenize",
           "unk_rate", "windows"]
