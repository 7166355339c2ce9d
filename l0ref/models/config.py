"""What a model is, apart from its numbers: :class:`ModelConfig`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import gates as gates_mod
from ..cells import check_options, get_cell
from ..cells._masks import check_count


@dataclass(frozen=True)
class ModelConfig:
    """Cell name, sizes, cell options and gate families of a stacked recurrent model.

    ``hidden_sizes`` (n_1, ..., n_L); ``cell_options`` e.g. ``{"depth": 10}`` for the RHN
    (each cell lists its own, ``cell.OPTIONS``); ``gate_families`` which gates the model
    has (``gates/families.py``: ``("neurons",)``, the gates of Wen et al., by default; any of
    ``preact``, ``weights``, ``vocab`` added, Lobacheva et al.'s), kept in canonical order.
    ``n_classes``: None for a language model (the output layer is a softmax over the
    vocabulary, ``language.py``), or the number of classes of a document classifier
    (``classifier.py``; the same parameters, with ``out_W`` (n_classes, n_L)).
    """

    cell: str
    vocab_size: int
    emb_size: int
    hidden_sizes: tuple[int, ...]
    cell_options: dict = field(default_factory=dict)
    gate_families: tuple[str, ...] = ("neurons",)
    n_classes: int | None = None

    def __post_init__(self):
        cell = get_cell(self.cell)  # raises for an unknown name
        object.__setattr__(self, "vocab_size", check_count("vocab_size", self.vocab_size, minimum=1))
        object.__setattr__(self, "emb_size", check_count("emb_size", self.emb_size))
        if isinstance(self.hidden_sizes, (str, bytes)) or not isinstance(self.hidden_sizes, (list, tuple)):
            raise ValueError(f"hidden_sizes must be a list or tuple of integers, got {self.hidden_sizes!r}")
        object.__setattr__(self, "hidden_sizes",
                           tuple(check_count("hidden_sizes entry", n) for n in self.hidden_sizes))
        if not isinstance(self.cell_options, dict):
            raise ValueError(f"cell_options must be a dict, got {self.cell_options!r}")
        object.__setattr__(self, "cell_options", check_options(cell, dict(self.cell_options)))
        if isinstance(self.gate_families, str) or not isinstance(self.gate_families, (list, tuple)):
            raise ValueError(f"gate_families must be a list or tuple of names, got {self.gate_families!r}")
        object.__setattr__(self, "gate_families", gates_mod.canonical_families(self.gate_families))
        if not self.hidden_sizes:
            raise ValueError("a model needs at least one recurrent layer (hidden_sizes is empty)")
        cell.param_shapes(self.emb_size, self.hidden_sizes[0], **self.cell_options)   # checks option values
        gates_mod.groups(self)                          # a family the cell lacks is refused here
        if self.n_classes is not None:
            object.__setattr__(self, "n_classes", check_count("n_classes", self.n_classes, minimum=2))

    @property
    def task(self) -> str:
        """``"lm"`` (next-word prediction) or ``"classify"`` (one class per document)."""
        return "lm" if self.n_classes is None else "classify"

    @property
    def n_outputs(self) -> int:
        """Rows of the output layer: the vocabulary size, or the number of classes."""
        return self.vocab_size if self.n_classes is None else self.n_classes

    @property
    def n_layers(self) -> int:
        return len(self.hidden_sizes)

    @property
    def group_sizes(self) -> list[int]:
        """Sizes of the neuron gate groups: [e, n_1, ..., n_L]."""
        return gates_mod.group_sizes(self.emb_size, self.hidden_sizes)

    @property
    def layer_sizes(self) -> list[tuple[int, int]]:
        """(input size, hidden size) of every layer."""
        sizes = self.group_sizes
        return list(zip(sizes[:-1], sizes[1:]))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        d["gate_families"] = list(self.gate_families)
        if self.n_classes is None:
            del d["n_classes"]          # a language model's dict is as before classifiers existed
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        required = {"cell", "vocab_size", "emb_size", "hidden_sizes"}
        known = required | {"cell_options", "gate_families", "n_classes"}
        if not isinstance(d, dict) or not required <= set(d):
            raise ValueError(f"a model config needs the keys {sorted(required)}, got {d!r}")
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}")
        return cls(d["cell"], d["vocab_size"], d["emb_size"], d["hidden_sizes"], d.get("cell_options", {}),
                   d.get("gate_families", ("neurons",)), d.get("n_classes"))


__all__ = ["ModelConfig"]
