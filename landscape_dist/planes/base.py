"""What every plane kind is: its base class, what it is built from, and the grid it is swept on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..config.schema import DirectionConfig, GridConfig, SliceConfig
from ..core.directions import FilterRule
from ..core.grid import axis_coordinates
from ..core.layout import WeightLayout
from ..core.plane import Plane, fitted_axis
from ..core.projection import project_path
from ..errors import LandscapeError
from ..registry import PLANE_KINDS


@dataclass(frozen=True)
class PlaneContext:
    """What a plane may be built from: the centre weights (size,), their layout, the recorded
    training path (T, size) where there is one, and each tensor's filter rule (from the layer
    that owns it; None: the last axis of every kernel)."""

    centre: np.ndarray
    layout: WeightLayout
    path: np.ndarray | None = None
    filters: tuple[FilterRule, ...] | None = None
    non_trainable: list | None = None  # the centre's non-trainable values (batch-norm statistics)
    resolve_model: Callable | None = None  # reference -> (flat weights, non-trainable or None)
    more_paths: tuple = ()  # the further recorded training runs (T_r, size), when several
    products: Callable | None = None  # Hessian products at the centre, (m, size) -> (m, size)
    curvature: object = None  # the curvature settings (CurvatureConfig; None: its defaults)
    meta: dict = dataclasses.field(default_factory=dict)  # added to every plane's metadata
    # (settings, A, B) -> (the trained bend (size,), what training did): the curve kind's bend
    bend: Callable | None = None


class PlaneKind:
    """Base of the plane kinds. Subclasses set the class attributes and implement :meth:`build`."""

    config: type = DirectionConfig  # the dataclass of the kind's settings
    needs_path: bool = False  # builds from the recorded training path
    fits_path: bool = False  # an axis range may be fitted to the projected path ('min: null')
    dims: tuple[int, ...] = (1, 2)  # the grid dimensions the kind can draw
    needs_products: bool = False  # built from Hessian products, once the pool runs
    # the metadata keys that go into the sweep's summary and into info(): the kind's name, the
    # cosine that Plane.make adds to every 2-D plane, and what each kind adds of its own
    summary_keys: tuple[str, ...] = ("kind", "cosine")

    # What the kind says about a plane it built, asked with the plane's stored metadata (the
    # ``meta`` of a Surface read back from its file), so that the figures, the summary and info()
    # need not know the kinds. The defaults fit any kind, one from a plugin included.

    def caption(self, meta: Mapping) -> str:
        """The kind's part of a figure's caption, e.g. ``"random directions, filter
        normalisation, seed 0"``; by default ``"<kind> directions"``."""
        return f"{meta['kind']} directions" if meta.get("kind") else "directions"

    def axis_labels(self, meta: Mapping, ndim: int, short: bool = False) -> list[str]:
        """The labels of the slice's ``ndim`` axes, ``short`` where there is little room (3-D
        views, heat maps, the interactive page); by default ``direction 0``, ``direction 1``."""
        return [f"direction {i}" for i in range(ndim)]

    def draws_path(self, meta: Mapping) -> bool:
        """Whether the recorded training path is drawn on the slice by default (``plot.show_path:
        auto``): where the plane is built to hold it."""
        return False

    def curves(self, meta: Mapping) -> dict:
        """The curves on the plane evaluated beside its grid, asked with the plane's metadata:
        name -> (t (T,), plane coordinates (T, k)); by default none."""
        return {}

    def to_store(self, plane: Plane) -> dict:
        """What an interrupted sweep keeps of a plane built from products (arrays and plain
        values), so that resuming it need not compute the plane again."""
        raise NotImplementedError

    def from_stored(self, cfg: DirectionConfig, context: PlaneContext, stored: dict) -> Plane:
        """The plane :meth:`to_store` kept."""
        raise NotImplementedError

    @classmethod
    def expand(cls, slice_cfg: SliceConfig) -> list[SliceConfig]:
        """The slices one configured slice of this kind stands for (the configuration expands
        it when it is loaded): itself alone, unless the kind says otherwise."""
        return [slice_cfg]

    def uses_path(self, cfg: DirectionConfig) -> bool:
        """Whether building from ``cfg`` needs the recorded training path."""
        return self.needs_path

    def build(self, cfg: DirectionConfig, context: PlaneContext, k: int) -> Plane:
        """The plane with ``k`` directions (1 or 2) for the settings ``cfg``."""
        raise NotImplementedError

    @staticmethod
    def common_meta(cfg: DirectionConfig, centre: np.ndarray) -> dict:
        return {"kind": cfg.kind, "normalization": cfg.normalization, "ignore": cfg.ignore,
                "seed": cfg.seed, "centre_norm": float(np.linalg.norm(centre))}


def kind_of(meta: Mapping) -> PlaneKind:
    """The kind that built the plane whose stored metadata is ``meta`` (by ``meta["kind"]``); the
    base :class:`PlaneKind` for a kind not registered in this process (a file written with a
    plugin's kind still plots, with the default caption and labels)."""
    name = meta.get("kind")
    return PLANE_KINDS[name]() if isinstance(name, str) and name in PLANE_KINDS else PlaneKind()


def build_plane(slice_cfg: SliceConfig, context: PlaneContext) -> Plane:
    """The plane of ``slice_cfg``, built by its kind."""
    kind = PLANE_KINDS[slice_cfg.directions.kind]()
    return kind.build(slice_cfg.directions, context, slice_cfg.grid.ndim)


def resolve_axes(grid: GridConfig, plane: Plane, path: np.ndarray | None):
    """Grid coordinates (xs, ys or None); an axis without a range fits the projected path with a
    25% margin on each side."""
    coords = None
    if path is not None and grid.auto:
        coords, _, _ = project_path(path, plane.centre, plane.directions)

    def axis(cfg, i: int):
        if not cfg.auto:
            return axis_coordinates(cfg.min, cfg.max, cfg.points, cfg.spacing)
        try:
            return fitted_axis(coords[:, i], cfg.points, cfg.spacing)
        except ValueError:
            name = "xy"[i]
            raise LandscapeError(f"The range of the {{axis}}{name} axis is to be fitted to the "
                                 f"projected training path, which has no finite point on this "
                                 f"plane (the training diverged, or the plane is not finite). "
                                 f"Give {{axis}}{name}.min and max.", axis="grid.") from None

    return axis(grid.x, 0), None if grid.y is None else axis(grid.y, 1)
