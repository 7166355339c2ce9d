"""Data: PTB-format text corpora, vocabularies and BPTT batches (``text.py``), and the embedded
default corpus built from Python's own documentation (``embedded.py``), labelled documents
for classification (``labelled.py``)."""
from .embedded import DEFAULT_SPLIT, default_corpus, default_corpus_lines
from .labelled import LabelledCorpus, labelled_from_lines, length_batches, load_labelled, pad
from .text import (EOS, LEVELS, UNK, Corpus, Vocab, batchify, build_vocab, corpus_from_lines, load_corpus,
                   min_tokens, read_text, tokenize, unk_rate, windows)

__all__ = ["LabelledCorpus", "labelled_from_lines", "length_batches", "load_labelled", "pad", "DEFAULT_SPLIT", "default_corpus", "default_corpus_lines", "EOS", "LEVELS", "UNK", "Corpus", "Vocab",
           "batchify", "build_vocab", "corpus_from_lines", "load_corpus", "min_tokens", "read_text", "tokenize",
           "unk_rate", "windows"]
