"""The configuration schema: small frozen dataclasses, each checking its own fields.

A dataclass names its own fields in its errors (``The 'points' setting must be ...``); the loader
that built it from a file adds where it sits (``grid.x.points``), see :meth:`SettingError.under`.
Choices that grow by registration (plane kinds, quantities, output formats, backends) are checked
against the names their registries list, without importing the entries; a plane kind's own rules
(the grid dimensions it draws) are asked of the kind. Nested defaults are built when a dataclass
is, never when the module is imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from ..registry import PLANE_KINDS, QUANTITIES
from .rules import MAX_LEVELS, ConfigError, SettingError, check_finite, check_seeds, is_int, must  # noqa: F401
from .sections import (ClusterConfig, CurvatureConfig, DataConfig, EvaluationConfig,  # noqa: F401
                       ModelConfig, PlotConfig, SharpnessConfig, TrainConfig)


NORMALIZATIONS = ("filter", "layer", "model", "none")
IGNORES = ("biasbn", "none")
SPACINGS = ("linear", "cubic")
TILE_ORDERS = ("coarse_to_fine", "rows")
DEFAULT_TILE = (16, 16)
DEFAULT_ORDER = "coarse_to_fine"
NAME_BYTES = 255  # a file name's length at most (ext4, XFS, APFS, NTFS: 255)
METRIC_NAME_BYTES = 32  # room for the names of the model's compiled metrics, unknown at load


@dataclass(frozen=True)
class AxisConfig:
    """One grid axis. ``min``/``max`` of None mean 'fit the projected training path'."""

    min: float | None = -1.0
    max: float | None = 1.0
    points: int = 51
    spacing: str = "linear"

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        if not is_int(self.points) or self.points < 2:
            raise must("points", "an integer >= 2", self.points)
        if self.spacing not in SPACINGS:
            raise must("spacing", f"one of {SPACINGS}", self.spacing)
        if (self.min is None) != (self.max is None):
            raise must("min", "given together with max (or both left out for 'auto')", self.min)
        if self.min is not None and not self.min < self.max:
            raise must("max", f"greater than min={self.min}", self.max,
                       "Give the axis a non-empty range.")

    @property
    def auto(self) -> bool:
        return self.min is None


@dataclass(frozen=True)
class RefineConfig:
    """Adaptive refinement of a 2-D grid (``grid.refine``): after the two coarsest lattices, only
    the points of cells not yet resolved are evaluated (see ``core/refine.py``)."""

    tol: float = 0.01  # surplus over the coarser interpolation, as a fraction of the values' span
    shift: float = 0.25  # estimated contour-line misplacement (grid cells) that splits a cell
    levels: int | None = None  # contour levels to resolve; null: plot.levels
    log_levels: bool | None = None  # on log values; null: plot.log_levels

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        if not 0 < self.tol < 1:
            raise must("tol", "a number between 0 and 1 (a fraction of the values' span)", self.tol)
        if not self.shift > 0:
            raise must("shift", "a number > 0 (grid cells)", self.shift)
        if self.levels is not None and (not is_int(self.levels) or not 2 <= self.levels <= MAX_LEVELS):
            raise must("levels", f"an integer from 2 to {MAX_LEVELS}, or null (plot.levels)",
                       self.levels)


@dataclass(frozen=True)
class FidelityConfig:
    """Two fidelities of a 2-D grid (``grid.fidelity``): the loss on a fixed, seeded subset of
    ``examples`` examples where the refinement (``grid.refine``'s settings) asks for points, on
    every example at the lattice of at least ``coarse`` points per side and at ``extra`` points
    where their difference is least certain; the rest estimated (see ``core/fidelity.py``)."""

    examples: int = 256
    examples_seed: int = 0
    coarse: int = 17
    extra: int = 0

    def __post_init__(self):
        check_seeds(self)
        if not is_int(self.examples) or self.examples < 2:
            raise must("examples", "an integer >= 2 (the cheap fidelity's subset of the examples)",
                       self.examples)
        if not is_int(self.examples_seed):
            raise must("examples_seed", "an integer", self.examples_seed)
        if not is_int(self.coarse) or self.coarse < 3:
            raise must("coarse", "an integer >= 3 (full-data points per side of the coarse lattice)",
                       self.coarse)
        if not is_int(self.extra) or self.extra < 0:
            raise must("extra", "an integer >= 0 (further full-data points)", self.extra)


@dataclass(frozen=True)
class GridConfig:
    """The grid of a slice: axis ``x`` (direction 0), optional ``y`` (direction 1), tile shape."""

    x: AxisConfig = field(default_factory=AxisConfig)
    y: AxisConfig | None = field(default_factory=AxisConfig)
    tile: tuple[int, int] = DEFAULT_TILE
    order: str = DEFAULT_ORDER
    refine: RefineConfig | None = None  # null: every point is evaluated
    fidelity: FidelityConfig | None = None  # null: every point on the data as given

    def __post_init__(self):
        if self.order not in TILE_ORDERS:
            raise must("order", f"one of {TILE_ORDERS}", self.order)
        if self.fidelity is not None:
            self._check_fidelity()
        if self.refine is not None and self.y is None:
            raise must("refine", "left out on a 1-D slice (refinement splits 2-D cells)",
                       dataclasses.asdict(self.refine),
                       "Remove grid.refine from this slice, or give it a y axis.")
        tile = self.tile
        if len(tile) != 2 or any(not is_int(t) or t < 1 for t in tile):
            raise must("tile", "two integers >= 1 ([rows, columns])", list(tile))
        # a tile larger than a small grid is the whole grid along that side
        object.__setattr__(self, "tile", (min(tile[0], self.ny), min(tile[1], self.x.points)))

    def _check_fidelity(self) -> None:
        if self.y is None:
            raise must("fidelity", "left out on a 1-D slice (the refinement it drives splits 2-D "
                       "cells)", dataclasses.asdict(self.fidelity),
                       "Remove grid.fidelity from this slice, or give it a y axis.")
        smaller = min(self.x.points, self.y.points)
        if self.fidelity.coarse > smaller:
            raise SettingError("coarse", f"at most the grid's {smaller} points per side",
                               self.fidelity.coarse, "Give fewer points, or a larger grid.").under(
                                   "fidelity")
        points = self.x.points * self.y.points  # each extra point is a greedy pick: keep it bounded
        if self.fidelity.extra > points:
            raise SettingError("extra", f"at most the grid's {points} points", self.fidelity.extra,
                               "Give fewer extra points.").under("fidelity")

    @property
    def ndim(self) -> int:
        return 1 if self.y is None else 2

    @property
    def ny(self) -> int:
        return 1 if self.y is None else self.y.points

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the surface arrays: rows follow y, columns follow x."""
        return (self.ny, self.x.points)

    @property
    def auto(self) -> bool:
        """Whether an axis range is to be fitted to the projected training path."""
        return self.x.auto or (self.y is not None and self.y.auto)


@dataclass(frozen=True)
class DirectionConfig:
    """How the slice's directions are made: the settings every plane kind shares.

    A plane kind with settings of its own subclasses this (see :mod:`landscape_dist.planes`).
    """

    kind: str = "random"
    normalization: str = "filter"
    ignore: str = "biasbn"
    seed: int = 0
    # the shared settings a kind's directions do not use (a subclass names them and gives each
    # the default 'none'): any other value would do nothing, and is refused
    unused: ClassVar[tuple[str, ...]] = ()
    unused_why: ClassVar[str] = ""  # why, for the message: what the kind's directions are

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        kinds = PLANE_KINDS.names()
        if self.kind not in kinds:
            raise must("kind", f"one of {kinds}", self.kind)
        if self.normalization not in NORMALIZATIONS:
            raise must("normalization", f"one of {NORMALIZATIONS}", self.normalization)
        if self.ignore not in IGNORES:
            raise must("ignore", f"one of {IGNORES}", self.ignore)
        for name in self.unused:
            if getattr(self, name) != "none":
                raise must(name, f"left out for kind {self.kind!r}, which does not use it "
                           f"({self.unused_why})", getattr(self, name), f"Remove {{at}}{name}.")

    def check_for(self, size: int) -> None:
        """Refuse settings a model of ``size`` weights cannot meet (asked once the model is
        known, before anything is written); by default there are none."""

    def preparation(self, train) -> dict:
        """What the slice costs beside its grid, for a dry run's estimate: ``epochs`` of
        training over the data before the sweep and ``points`` evaluated beside the grid (by
        the ``train`` section where the kind leaves its own settings out); by default nothing."""
        return {}


@dataclass(frozen=True)
class SliceConfig:
    """One surface: a name, its directions, its grid and the quantities evaluated at its points
    (``loss``, the loss and every compiled metric; ``hessian_max``, ``hessian_min``...)."""

    name: str = "random"
    directions: DirectionConfig = field(default_factory=DirectionConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    quantities: tuple[str, ...] = ("loss",)

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise must("name", "a non-empty name of letters, digits, '-' or '_'", self.name)
        known = QUANTITIES.names()
        quantities = list(self.quantities)
        if ("loss" not in quantities or len(set(quantities)) != len(quantities)
                or any(q not in known for q in quantities)):
            raise must("quantities", f"a list of distinct names from {known}, 'loss' among them",
                       quantities)
        kind = PLANE_KINDS[self.directions.kind]  # the kind says which grids it can draw
        if self.grid.ndim not in kind.dims:
            need = "null (a 1-D slice)" if kind.dims == (1,) else "a mapping (a 2-D slice)"
            raise must("grid.y", f"{need} for kind {self.directions.kind!r}",
                       None if self.grid.y is None else "a mapping")
        if self.grid.auto and not kind.fits_path:
            raise must("grid.x.min", f"a number for {self.directions.kind} directions (an "
                       f"automatic range fits a training path, which needs kind: pca)", None)


@dataclass(frozen=True)
class Config:
    """A whole run: model, data, training, the slices to sweep, the Ray pool, evaluation, plots."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    slices: tuple[SliceConfig, ...] = field(default_factory=lambda: (SliceConfig(),))
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    plot: PlotConfig = field(default_factory=PlotConfig)
    curvature: CurvatureConfig | None = None  # None: 'run' computes no curvature at the centre
    sharpness: SharpnessConfig | None = None  # None: 'run' computes no sharpness along training

    def __post_init__(self):
        if not self.slices:
            raise must("slices", "a list of at least one slice", [])
        names = [s.name for s in self.slices]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise must("slices", "a list of slices with distinct names", names,
                       f"Rename the repeated '{duplicated[0]}'.")
        for slice_cfg in self.slices:
            self._check_file_names(slice_cfg)
        self._check_fidelity()

    def _check_fidelity(self) -> None:
        """Two fidelities (``grid.fidelity``) take their subset from the one dataset, on every
        example: one subset size for every slice, no draft, no several datasets."""
        fidelities = [s.grid.fidelity for s in self.slices if s.grid.fidelity is not None]
        if not fidelities:
            return
        got = dataclasses.asdict(fidelities[0])
        if self.data.datasets is not None:
            raise must("grid.fidelity", "left out when 'data.source' names several datasets",
                       got, "Remove grid.fidelity, or give data.source one dataset.")
        if self.evaluation.examples is not None:
            raise must("grid.fidelity", "left out of a draft (evaluation.examples is "
                       f"{self.evaluation.examples}): the full-data fidelity is every example",
                       got, "Remove grid.fidelity or evaluation.examples.")
        for s in self.slices:
            if s.grid.fidelity is not None and tuple(s.quantities) != ("loss",):
                raise must("quantities", "['loss'] in a slice with grid.fidelity (the estimate "
                           "corrects the loss and metrics)", list(s.quantities),
                           f"Remove grid.fidelity from slice '{s.name}', or its other quantities.")
        subsets = {(f.examples, f.examples_seed) for f in fidelities}
        if len(subsets) > 1:
            raise must("grid.fidelity.examples", "the same in every slice (the workers hold one "
                       "subset)", sorted(subsets), "Give every slice the same examples and "
                       "examples_seed.")

    def _check_file_names(self, slice_cfg: SliceConfig) -> None:
        """Refuse a slice name that would make its figures' file names longer than a file system
        allows (``<name>_<dataset>-<quantity>_heatmap.<format>`` the longest)."""
        added, pattern = figure_suffix(slice_cfg.quantities, self.data.datasets,
                                       self.plot.all_formats)
        name, room = slice_cfg.name.encode(), NAME_BYTES - added
        if len(name) > room:
            raise ConfigError(
                f"The slice name '{slice_cfg.name}' is {len(name)} bytes; its figures' file names "
                f"add up to {added} more ({pattern}), beyond the {NAME_BYTES} bytes a file name "
                f"may have. Give the slice a name of at most {room} bytes.")

    def to_dict(self) -> dict:
        """The resolved configuration as plain YAML-able data."""
        return to_plain(self)


def figure_suffix(quantities, datasets, formats=("png",)) -> tuple[int, str]:
    """The bytes the figures append to a slice's name at most, and their pattern: a value's name
    (a quantity, or a compiled metric of the loss, counted as :data:`METRIC_NAME_BYTES`),
    prefixed by its dataset, the longest figure word and the longest of the configured output
    formats (at least a figure's three letters)."""
    value = max(max(len(q.encode()) for q in quantities), METRIC_NAME_BYTES)
    dataset = max((len(d.encode()) + 1 for d in datasets or {}), default=0)
    fmt = max(("png", *formats), key=len)
    pattern = (f"'_{'<dataset>-' if datasets else ''}<quantity>_heatmap.{fmt}', a quantity's "
               f"name counted as {value} bytes")
    return 1 + dataset + value + len(f"_heatmap.{fmt}"), pattern


def to_plain(value):
    """Dataclasses and tuples as plain dicts and lists."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: to_plain(v) for key, v in value.items()}
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    return value
