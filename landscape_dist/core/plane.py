"""A slice's coordinate system: the centre, its directions and what describes them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .directions import cosine
from .grid import axis_coordinates
from .layout import WeightLayout


@dataclass(frozen=True)
class Plane:
    """centre (size,), directions (k, size) float32, the layout and metadata (kind, norms...)."""

    centre: np.ndarray
    directions: np.ndarray
    layout: WeightLayout
    meta: dict
    non_trainable: list | None = None  # non-trainable values at the centre (None: the model's)
    non_trainable_directions: list | None = None  # k lists: how they move along each direction
    recompute: int | None = None  # batch-norm statistics re-estimated at each point on n examples

    @classmethod
    def make(cls, centre, directions, layout: WeightLayout, meta: dict, non_trainable=None,
             non_trainable_directions=None) -> "Plane":
        """A plane with the norms of its directions (and their cosine, for two) added to ``meta``."""
        directions = np.atleast_2d(np.asarray(directions))
        meta = dict(meta)
        meta["direction_norms"] = [float(np.linalg.norm(v)) for v in directions]
        if len(directions) == 2:
            meta["cosine"] = cosine(directions[0], directions[1])
        return cls(np.asarray(centre, np.float32), directions.astype(np.float32), layout, meta,
                   non_trainable, non_trainable_directions)

    @property
    def k(self) -> int:
        return int(self.directions.shape[0])


def fitted_axis(coords: np.ndarray, points: int, spacing: str = "linear",
                margin: float = 0.25) -> np.ndarray:
    """An axis spanning the finite ``coords`` (the path's coordinates along it) with ``margin`` of
    the span added on each side; shape (points,). ValueError when none is finite."""
    coords = np.asarray(coords, dtype=np.float64)
    coords = coords[np.isfinite(coords)]
    if coords.size == 0:
        raise ValueError("no finite coordinate to fit the axis to")
    lo, hi = float(np.min(coords)), float(np.max(coords))
    span = hi - lo if hi > lo else 1.0
    return axis_coordinates(lo - margin * span, hi + margin * span, points, spacing)
