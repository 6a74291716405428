"""``kind: random``: seeded Gaussian directions, normalised piece by piece (Li et al.)."""

from __future__ import annotations

import numpy as np

from ..core.directions import random_directions
from ..core.plane import Plane
from . import PLANE_KINDS, PlaneKind


@PLANE_KINDS.register("random")
class RandomPlane(PlaneKind):
    """Directions drawn from N(0, 1) with the slice's seed, rescaled to the centre's norms by
    ``normalization`` (filter, layer, model, none); biases and norms zeroed by ``ignore: biasbn``."""

    def build(self, cfg, context, k):
        directions = random_directions(context.centre, context.layout, k,
                                       np.random.default_rng(cfg.seed), cfg.normalization, cfg.ignore)
        return Plane.make(context.centre, directions, context.layout,
                          self.common_meta(cfg, context.centre))
