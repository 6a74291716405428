"""``kind: random``: seeded Gaussian directions, normalised piece by piece (Li et al.)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..config.schema import DirectionConfig, SliceConfig, must
from ..core.directions import default_filter_rules, random_directions
from ..core.plane import Plane
from .base import PlaneKind


@dataclass(frozen=True)
class RandomDirections(DirectionConfig):
    """Settings of random directions: ``seeds`` expands the slice into one slice per seed
    (named ``<name>_seed<s>``, drawn together as the ``group``)."""

    seeds: tuple[int, ...] = ()
    group: str | None = None  # set by the expansion: the name of the slice the seeds came from

    def __post_init__(self):
        super().__post_init__()
        if len(set(self.seeds)) != len(self.seeds):
            raise must("seeds", "a list of distinct integers", list(self.seeds))


class RandomPlane(PlaneKind):
    """Directions drawn from N(0, 1) with the slice's seed, rescaled to the centre's norms by
    ``normalization`` (filter, layer, model, none); biases and norms zeroed by ``ignore: biasbn``."""

    config = RandomDirections  # its summaries: the base's keys (kind, cosine)

    @classmethod
    def expand(cls, slice_cfg: SliceConfig) -> list[SliceConfig]:
        """A slice with ``seeds``: one slice per seed, ``<name>_seed<s>``, grouped by its name."""
        seeds = slice_cfg.directions.seeds
        if not seeds:
            return [slice_cfg]
        return [dataclasses.replace(
            slice_cfg, name=f"{slice_cfg.name}_seed{s}",
            directions=dataclasses.replace(slice_cfg.directions, seed=s, seeds=(),
                                           group=slice_cfg.name))
            for s in seeds]

    def caption(self, meta):
        text = (f"random directions, {meta.get('normalization')} normalisation, "
                f"seed {meta.get('seed')}")
        return text + (f", cos(d0, d1) = {meta['cosine']:.3f}" if "cosine" in meta else "")

    def build(self, cfg, context, k):
        layout = context.layout
        filters = context.filters or default_filter_rules(layout)
        directions = random_directions(context.centre, layout, k, np.random.default_rng(cfg.seed),
                                       cfg.normalization, cfg.ignore, filters)
        meta = self.common_meta(cfg, context.centre)
        if cfg.group:
            meta["seed_group"] = cfg.group
        if cfg.normalization == "filter":  # per tensor, the rule its filters were taken by
            meta["filter_rules"] = [
                "zeroed (ignore: biasbn)" if cfg.ignore == "biasbn" and rule.bias else rule.rule
                for rule in filters]
        return Plane.make(context.centre, directions, layout, meta)
