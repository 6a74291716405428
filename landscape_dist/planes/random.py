"""``kind: random``: seeded Gaussian directions, normalised piece by piece (Li et al.)."""

from __future__ import annotations

import numpy as np

from ..core.directions import default_filter_rules, random_directions
from ..core.plane import Plane
from . import PLANE_KINDS, PlaneKind


@PLANE_KINDS.register("random")
class RandomPlane(PlaneKind):
    """Directions drawn from N(0, 1) with the slice's seed, rescaled to the centre's norms by
    ``normalization`` (filter, layer, model, none); biases and norms zeroed by ``ignore: biasbn``."""

    def build(self, cfg, context, k):
        layout = context.layout
        filters = context.filters or default_filter_rules(layout)
        directions = random_directions(context.centre, layout, k, np.random.default_rng(cfg.seed),
                                       cfg.normalization, cfg.ignore, filters)
        meta = self.common_meta(cfg, context.centre)
        if cfg.normalization == "filter":  # per tensor, the rule its filters were taken by
            meta["filter_rules"] = [
                "zeroed (ignore: biasbn)" if cfg.ignore == "biasbn" and rule.bias else rule.rule
                for rule in filters]
        return Plane.make(context.centre, directions, layout, meta)
