"""A quantity kind from outside the package, registered when this module is imported (as a
plugin would be): ``squared_norm``, ||w||^2 at each point. Ray workers learn of it from the
driver's registry and import this module themselves."""

import numpy as np

from landscape_dist.core.quantities import POINTS, Part, QuantitySet
from landscape_dist.model.quantities import QuantityKind
from landscape_dist.registry import QUANTITIES

NAME = "squared_norm"


@QUANTITIES.register(NAME)
class SquaredNorm(QuantityKind):
    """||w||^2 at each point: depends on the weights only, so shards take it once."""

    def describe(self):
        return QuantitySet((Part(NAME, "first"),))

    def compute(self, which, items):
        weights = self.evaluator.weights_at(items) if which == POINTS else np.asarray(items)
        return {NAME: np.sum(weights.astype(np.float64) ** 2, axis=1)}
