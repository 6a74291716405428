"""A slice's coordinate system: the centre, its directions and what describes them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import AxisConfig, SliceConfig
from .directions import TrajectoryPCA, cosine, random_directions
from .grid import axis_coordinates
from .layout import WeightLayout
from .projection import project_path


@dataclass(frozen=True)
class Plane:
    """centre (size,), directions (k, size), the layout and metadata (kind, norms, cosine...)."""

    centre: np.ndarray
    directions: np.ndarray
    layout: WeightLayout
    meta: dict


def build_plane(slice_cfg: SliceConfig, centre: np.ndarray, layout: WeightLayout,
                path: np.ndarray | None = None) -> Plane:
    """Directions for ``slice_cfg``: seeded random (normalised) or PCA of ``path`` (T, size)."""
    d = slice_cfg.directions
    k = slice_cfg.grid.ndim
    meta = {"kind": d.kind, "normalization": d.normalization, "ignore": d.ignore, "seed": d.seed,
            "centre_norm": float(np.linalg.norm(centre))}
    mask = layout.low_rank_mask() if d.ignore == "biasbn" else None
    if d.kind == "random":
        directions = random_directions(centre, layout, k, np.random.default_rng(d.seed),
                                       d.normalization, d.ignore)
    else:
        if path is None:
            raise ValueError(f"The '{slice_cfg._name}.directions.kind' setting is 'pca', which needs a "
                             f"recorded training path. Run 'landscape-dist train' first or use "
                             f"kind: random.")
        pca = TrajectoryPCA(n_components=k, mask=mask).fit(path)
        directions = pca.components_
        meta["explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
        meta["normalization"] = "none"
    meta["direction_norms"] = [float(np.linalg.norm(v)) for v in directions]
    if k == 2:
        meta["cosine"] = cosine(directions[0], directions[1])
    return Plane(centre.astype(np.float32), directions.astype(np.float32), layout, meta)


def resolve_axes(slice_cfg: SliceConfig, plane: Plane, path: np.ndarray | None):
    """Grid coordinates (xs, ys or None); 'auto' axes fit the projected path with a 25% margin."""
    coords = None
    if path is not None and (slice_cfg.grid.x.auto or (slice_cfg.grid.y and slice_cfg.grid.y.auto)):
        coords, _, _ = project_path(path, plane.centre, plane.directions)

    def axis(cfg: AxisConfig, i: int):
        if not cfg.auto:
            return axis_coordinates(cfg.min, cfg.max, cfg.points, cfg.spacing)
        lo, hi = float(coords[:, i].min()), float(coords[:, i].max())
        span = hi - lo if hi > lo else 1.0
        return axis_coordinates(lo - 0.25 * span, hi + 0.25 * span, cfg.points, cfg.spacing)

    ys = None if slice_cfg.grid.y is None else axis(slice_cfg.grid.y, 1)
    return axis(slice_cfg.grid.x, 0), ys
