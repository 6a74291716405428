"""What a grid point yields, described once: the parts a worker returns and the stored quantities.

A worker returns *parts*, each with the rule by which the shards of a dataset combine it
(:mod:`.shards`); the stored quantities are the parts, some of them summed (the loss is the data
loss plus the regularisation). The quantity kinds that produce parts are registered in
:data:`landscape_dist.registry.QUANTITIES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .shards import REDUCTIONS, combine_parts

# What a batch of items handed to a worker is: plane coordinates (P, k) or flat weights (P, size),
# or vectors (m, size) to multiply by the Hessian at the plane's centre, or flat weights (m, size)
# at which to take the loss and its gradient.
POINTS, WEIGHTS, HVP, GRADIENT = "coords", "weights", "hvp", "gradient"
# Or pairs (m, 2, size): row p's weights and the vector to multiply by the Hessian at them.
HVP_AT = "hvp_at"


def main_loss(names) -> str:
    """The quantity figures and counts follow: ``loss``, or the first dataset's ``<name>/loss``."""
    names = list(names)
    return "loss" if "loss" in names else next((n for n in names if n.endswith("/loss")), names[0])


@dataclass(frozen=True)
class Part:
    """One value per point that a worker returns: its name, how shards combine it, and whether it
    is stored as a quantity of its own (besides entering sums)."""

    name: str
    reduce: str = "mean"
    stored: bool = True
    dataset: str = ""  # the dataset a mean is over ('' for the only one): its shard sizes weigh it

    def __post_init__(self):
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"The 'reduce' parameter must be one of {REDUCTIONS}. "
                             f"Got {self.reduce!r} instead.")


@dataclass(frozen=True)
class QuantitySet:
    """Parts a worker returns per point, and the weighted sums that make further quantities.

    ``sums``: (stored name, ((part name, weight), ...)) pairs; a bare part name has weight 1.
    ``stderrs``: :class:`StandardError` entries, the standard error of a mean over a random
    subset of the examples. Stored quantities: the sums, the parts marked ``stored``, then the
    standard errors.
    """

    parts: tuple[Part, ...]
    sums: tuple[tuple[str, tuple], ...] = ()
    stderrs: tuple["StandardError", ...] = ()

    def __post_init__(self):
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"The parts of a quantity set must have distinct names. Got {names}.")
        sums = tuple((name, tuple((t, 1.0) if isinstance(t, str) else (t[0], float(t[1]))
                                  for t in terms)) for name, terms in self.sums)
        object.__setattr__(self, "sums", sums)
        missing = [n for _, terms in sums for n, _ in terms if n not in names]
        if missing:
            raise ValueError(f"The sums name parts that do not exist: {missing}.")
        stored = self.names
        if len(set(stored)) != len(stored):
            raise ValueError(f"The stored quantities must have distinct names. Got {list(stored)}.")

    @property
    def names(self) -> tuple[str, ...]:
        """The stored quantities, in order: the sums, the stored parts, the standard errors."""
        return (tuple(name for name, _ in self.sums) + tuple(p.name for p in self.parts if p.stored)
                + tuple(e.name for e in self.stderrs))

    def __add__(self, other: "QuantitySet") -> "QuantitySet":
        return QuantitySet(self.parts + other.parts, self.sums + other.sums,
                           self.stderrs + other.stderrs)

    def for_dataset(self, name: str) -> "QuantitySet":
        """The same quantities on dataset ``name``: every name as ``<name>/<quantity>``."""
        parts = tuple(Part(f"{name}/{p.name}", p.reduce, p.stored, name) for p in self.parts)
        sums = tuple((f"{name}/{total}", tuple((f"{name}/{part}", w) for part, w in terms))
                     for total, terms in self.sums)
        stderrs = tuple(StandardError(f"{name}/{e.name}",
                                      tuple((f"{name}/{part}", w) for part, w in e.terms),
                                      f"{name}/{e.squares}", e.n, e.total) for e in self.stderrs)
        return QuantitySet(parts, sums, stderrs)

    def finish(self, parts: dict) -> dict[str, np.ndarray]:
        """Stored quantities from one complete set of parts (name -> (P,) arrays)."""
        out = {}
        for name, terms in self.sums:
            total = None
            for part, weight in terms:
                term = parts[part] if weight == 1.0 else weight * parts[part]
                total = term if total is None else total + term
            out[name] = total
        out.update({p.name: parts[p.name] for p in self.parts if p.stored})
        out.update({e.name: e.of(parts) for e in self.stderrs})
        return out

    def combine(self, shard_parts: list[dict], sizes) -> dict[str, np.ndarray]:
        """Stored quantities of the whole data from its shards' parts (one dict per shard).

        ``sizes``: examples per shard, a list, or for several datasets a dict of such lists by
        dataset name (each part is weighed by its own dataset's shard sizes).
        """
        if not isinstance(sizes, dict):
            sizes = {p.dataset: sizes for p in self.parts}
        combined = {}
        for dataset in dict.fromkeys(p.dataset for p in self.parts):
            reductions = {p.name: p.reduce for p in self.parts if p.dataset == dataset}
            combined.update(combine_parts(shard_parts, sizes[dataset], reductions))
        return self.finish(combined)


@dataclass(frozen=True)
class StandardError:
    """The standard error of a mean over ``n`` examples drawn without replacement from ``total``:
    the mean is the weighted sum of ``terms`` (parts), ``squares`` the part holding the mean of
    the per-example values squared. With the finite-population correction: 0 when ``n`` is
    ``total`` (every example)."""

    name: str
    terms: tuple[tuple[str, float], ...]
    squares: str
    n: int
    total: int

    def of(self, parts: dict) -> np.ndarray:
        mean = sum(w * np.asarray(parts[p], np.float64) for p, w in self.terms)
        second = np.asarray(parts[self.squares], np.float64)
        n, total = self.n, self.total
        variance = np.maximum(second - mean ** 2, 0.0) * n / max(n - 1, 1)  # of one example
        correction = (total - n) / (total - 1) if total > 1 else 0.0
        return np.sqrt(variance / n * correction)


# What an HVP job returns: the product of the Hessian of the shard's loss (its mean data loss plus
# the regularisation) with each vector; the size-weighted mean over shards is the whole product.
PRODUCTS = QuantitySet((Part("hvp", "mean"),))

# What a GRADIENT job returns: the loss of the shard (its mean data loss plus the regularisation)
# and its gradient, (m,) and (m, size); the size-weighted means over shards are the whole data's.
GRADIENTS = QuantitySet((Part("loss", "mean"), Part("gradient", "mean")))
