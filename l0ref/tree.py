"""Parameter trees: nested dicts and lists of arrays, walked in one fixed order.

Every model's parameters, gradients and optimizer moments are such trees::

    {"emb": (V, e), "layers": [{"W": ..., "U": ..., "b": ...}, ...],
     "log_alpha": {"neurons": [(e,), (n_1,), ...]}, "out_W": ..., "out_b": ...}

:func:`walk` is the one walker: dict keys in sorted order, list items in order, each
leaf named by its path joined with dots (``layers.0.W``, ``log_alpha.neurons.2``).
Checkpoints store arrays under those names, the optimizer zips the leaves of the
parameters with those of the gradients, and every parameter check names a leaf so.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np


def walk(tree, prefix: str = "", *, strict: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, leaf)`` for every leaf of ``tree``, dict keys sorted, list items numbered.

    Keys must be non-empty strings without ``.`` or ``/`` and not all digits (a name
    must say unambiguously where its leaf sits); ``ValueError`` otherwise.  ``strict``
    (for storage, where names are all that is kept): an empty list or dict is refused
    too, since no name would record it.
    """
    if isinstance(tree, (dict, list, tuple)) and not tree and strict:
        raise ValueError(f"cannot store an empty {type(tree).__name__} at {prefix[:-1]!r}")
    if isinstance(tree, dict):
        for k in sorted(tree):
            if not isinstance(k, str) or not k or "." in k or "/" in k or k.isdigit():
                raise ValueError(f"a parameter tree cannot have the key {k!r}")
            yield from walk(tree[k], f"{prefix}{k}.", strict=strict)
    elif isinstance(tree, (list, tuple)):
        for i, item in enumerate(tree):
            yield from walk(item, f"{prefix}{i}.", strict=strict)
    else:
        yield prefix[:-1], tree


def leaves(tree) -> list[np.ndarray]:
    """The leaves of :func:`walk`, in its order."""
    return [a for _, a in walk(tree)]


def flat_names(tree) -> list[str]:
    """The names of :func:`walk`, in its order, e.g. ``layers.0.W``."""
    return [name for name, _ in walk(tree)]


def map_tree(fn, *trees):
    """Apply ``fn`` leafwise to trees of the same structure (lists of arrays included)."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: map_tree(fn, *(t[k] for t in trees)) for k in first}
    if isinstance(first, (list, tuple)):
        return [map_tree(fn, *items) for items in zip(*trees)]
    return fn(*trees)


def subtree(tree, name: str):
    """The node at the dotted path ``name`` (``"log_alpha.neurons"``), or ``KeyError``."""
    node = tree
    for part in name.split("."):
        node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
    return node


__all__ = ["walk", "leaves", "flat_names", "map_tree", "subtree"]
