"""Quantity kinds: what a worker computes at each point, registered under their configuration name.

A kind is built on a worker's :class:`~landscape_dist.model.evaluator.LandscapeEvaluator`,
describes its parts once (:class:`~landscape_dist.core.quantities.QuantitySet`: names and how
shards combine them) and computes them for a batch of points or weight vectors. A worker may hold
several kinds; their parts are merged, and the pool combines shards by the merged description.
A new kind (another dataset's loss, Hessian eigenvalues) is one class registered here.
"""

from __future__ import annotations

from ..core.quantities import QuantitySet
from ..registry import Registry


class QuantityKind:
    """Base of the quantity kinds: built on an evaluator, describes and computes its parts."""

    def __init__(self, evaluator):
        self.evaluator = evaluator

    def describe(self) -> QuantitySet:
        raise NotImplementedError

    def check_shardable(self) -> None:
        """Raise a ValueError when the parts cannot be combined from shards of the data."""

    def compute(self, which: str, items) -> dict:
        """The parts at ``items`` (plane coordinates or weight vectors, see ``which``)."""
        raise NotImplementedError


QUANTITIES: Registry[type[QuantityKind]] = Registry("quantity")
DEFAULT_QUANTITIES = ("loss",)


@QUANTITIES.register("loss")
class LossAndMetrics(QuantityKind):
    """The model's compiled loss (data loss plus regularisation, as Keras's ``evaluate`` reports
    it) and every compiled metric."""

    def describe(self):
        return self.evaluator.quantities

    def check_shardable(self):
        from .checks import check_shardable  # TensorFlow only where a worker runs

        check_shardable(self.evaluator.model)

    def compute(self, which, items):
        return self.evaluator.parts(which, items)
