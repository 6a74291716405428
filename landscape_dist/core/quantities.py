"""What a grid point yields, described once: the parts a worker returns and the stored quantities.

A worker returns *parts*, each with the rule by which the shards of a dataset combine it
(:mod:`.shards`); the stored quantities are the parts, some of them summed (the loss is the data
loss plus the regularisation). The quantity kinds that produce parts are registered in
:data:`landscape_dist.model.quantities.QUANTITIES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shards import REDUCTIONS, combine_parts

# What a batch of items handed to a worker is: plane coordinates (P, k) or flat weights (P, size).
POINTS, WEIGHTS = "coords", "weights"


@dataclass(frozen=True)
class Part:
    """One value per point that a worker returns: its name and how shards combine it."""

    name: str
    reduce: str = "mean"

    def __post_init__(self):
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"The 'reduce' parameter must be one of {REDUCTIONS}. "
                             f"Got {self.reduce!r} instead.")


@dataclass(frozen=True)
class QuantitySet:
    """Parts a worker returns per point, and the sums that turn them into stored quantities.

    ``sums``: (stored name, (part names...)) pairs; the summed parts are not stored themselves.
    """

    parts: tuple[Part, ...]
    sums: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __post_init__(self):
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"The parts of a quantity set must have distinct names. Got {names}.")
        missing = [n for _, summed in self.sums for n in summed if n not in names]
        if missing:
            raise ValueError(f"The sums name parts that do not exist: {missing}.")

    @property
    def names(self) -> tuple[str, ...]:
        """The stored quantities, in order: the sums, then the parts not summed."""
        summed = {n for _, group in self.sums for n in group}
        return tuple(name for name, _ in self.sums) + tuple(
            p.name for p in self.parts if p.name not in summed)

    def __add__(self, other: "QuantitySet") -> "QuantitySet":
        return QuantitySet(self.parts + other.parts, self.sums + other.sums)

    def finish(self, parts: dict) -> dict[str, np.ndarray]:
        """Stored quantities from one complete set of parts (name -> (P,) arrays)."""
        summed = {n for _, group in self.sums for n in group}
        out = {name: sum(parts[n] for n in group) for name, group in self.sums}
        out.update({p.name: parts[p.name] for p in self.parts if p.name not in summed})
        return out

    def combine(self, shard_parts: list[dict], sizes: list[int]) -> dict[str, np.ndarray]:
        """Stored quantities of the whole dataset from its shards' parts (one dict per shard)."""
        reductions = {p.name: p.reduce for p in self.parts}
        return self.finish(combine_parts(shard_parts, sizes, reductions))
