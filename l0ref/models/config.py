"""What a model is, apart from its numbers: :class:`ModelConfig`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import gates as gates_mod
from ..cells import check_options, get_cell


@dataclass(frozen=True)
class ModelConfig:
    """Cell name, sizes, cell options and gate families of a stacked recurrent model.

    ``hidden_sizes`` (n_1, ..., n_L); ``cell_options`` e.g. ``{"depth": 10}`` for the RHN
    (each cell lists its own, ``cell.OPTIONS``); ``gate_families`` which gates the model
    has (``gates/families.py``; today ``("neurons",)``, the gates of Wen et al.).
    """

    cell: str
    vocab_size: int
    emb_size: int
    hidden_sizes: tuple[int, ...]
    cell_options: dict = field(default_factory=dict)
    gate_families: tuple[str, ...] = ("neurons",)

    def __post_init__(self):
        cell = get_cell(self.cell)  # raises for an unknown name
        object.__setattr__(self, "hidden_sizes", tuple(int(n) for n in self.hidden_sizes))
        object.__setattr__(self, "cell_options", check_options(cell, dict(self.cell_options)))
        object.__setattr__(self, "gate_families", tuple(self.gate_families))
        for name in self.gate_families:
            gates_mod.get_family(name)
        if self.vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {self.vocab_size}")
        if self.emb_size < 0 or any(n < 0 for n in self.hidden_sizes):
            raise ValueError(f"sizes must be >= 0, got emb_size={self.emb_size}, hidden_sizes={self.hidden_sizes}")
        if not self.hidden_sizes:
            raise ValueError("a model needs at least one recurrent layer (hidden_sizes is empty)")

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
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        required = {"cell", "vocab_size", "emb_size", "hidden_sizes"}
        known = required | {"cell_options", "gate_families"}
        if not isinstance(d, dict) or not required <= set(d):
            raise ValueError(f"a model config needs the keys {sorted(required)}, got {d!r}")
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}")
        return cls(d["cell"], int(d["vocab_size"]), int(d["emb_size"]), tuple(d["hidden_sizes"]),
                   dict(d.get("cell_options", {})), tuple(d.get("gate_families", ("neurons",))))


__all__ = ["ModelConfig"]
