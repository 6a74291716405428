"""Run configuration: small frozen dataclasses built from YAML and checked at load time.

Every setting has a dotted name (``grid.x.points``, ``slices.1.directions.kind``); errors name it,
say what it must be, what it got, and how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A setting has a value the tool cannot use."""


def _must(name: str, requirement: str, got: Any, fix: str = "") -> ConfigError:
    message = f"The '{name}' setting must be {requirement}. Got {got!r} instead."
    return ConfigError(f"{message} {fix}".strip())


NORMALIZATIONS = ("filter", "layer", "model", "none")
IGNORES = ("biasbn", "none")
DIRECTION_KINDS = ("random", "pca")
SPACINGS = ("linear", "cubic")
RECORD_UNITS = ("epoch", "step")
EVAL_MODES = ("auto", "vectorized", "loop")
TILE_ORDERS = ("coarse_to_fine", "rows")


@dataclass(frozen=True)
class AxisConfig:
    """One grid axis. ``min``/``max`` of None mean 'fit the projected training path'."""

    min: float | None = -1.0
    max: float | None = 1.0
    points: int = 51
    spacing: str = "linear"
    _name: str = field(default="grid.x", repr=False, compare=False)

    def __post_init__(self):
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points < 2:
            raise _must(f"{self._name}.points", "an integer >= 2", self.points)
        if self.spacing not in SPACINGS:
            raise _must(f"{self._name}.spacing", f"one of {SPACINGS}", self.spacing)
        if (self.min is None) != (self.max is None):
            raise _must(f"{self._name}.min", "given together with max (or both left out for 'auto')",
                        self.min)
        if self.min is not None and not self.min < self.max:
            raise _must(f"{self._name}.max", f"greater than min={self.min}", self.max,
                        "Give the axis a non-empty range.")

    @property
    def auto(self) -> bool:
        return self.min is None


@dataclass(frozen=True)
class GridConfig:
    """The grid of a slice: axis ``x`` (direction 0), optional ``y`` (direction 1), tile shape."""

    x: AxisConfig = AxisConfig()
    y: AxisConfig | None = AxisConfig(_name="grid.y")
    tile: tuple[int, int] = (16, 16)
    order: str = "coarse_to_fine"
    _name: str = field(default="grid", repr=False, compare=False)

    def __post_init__(self):
        if self.order not in TILE_ORDERS:
            raise _must(f"{self._name}.order", f"one of {TILE_ORDERS}", self.order)
        tile = self.tile
        if (len(tile) != 2 or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in tile)):
            raise _must(f"{self._name}.tile", "two integers >= 1 ([rows, columns])", list(tile))
        if tile[1] > self.x.points:
            raise _must(f"{self._name}.tile", f"no wider than grid.x.points={self.x.points}",
                        list(tile), "Use a smaller tile.")
        if tile[0] > self.ny:
            raise _must(f"{self._name}.tile", f"no taller than the grid's {self.ny} rows",
                        list(tile), "Use a smaller tile.")

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


@dataclass(frozen=True)
class DirectionConfig:
    """How the slice's directions are made."""

    kind: str = "random"
    normalization: str = "filter"
    ignore: str = "biasbn"
    seed: int = 0
    _name: str = field(default="directions", repr=False, compare=False)

    def __post_init__(self):
        if self.kind not in DIRECTION_KINDS:
            raise _must(f"{self._name}.kind", f"one of {DIRECTION_KINDS}", self.kind)
        if self.normalization not in NORMALIZATIONS:
            raise _must(f"{self._name}.normalization", f"one of {NORMALIZATIONS}", self.normalization)
        if self.ignore not in IGNORES:
            raise _must(f"{self._name}.ignore", f"one of {IGNORES}", self.ignore)


@dataclass(frozen=True)
class SliceConfig:
    """One surface: a name, its directions and its grid."""

    name: str = "random"
    directions: DirectionConfig = DirectionConfig()
    grid: GridConfig = GridConfig()
    _name: str = field(default="slices.0", repr=False, compare=False)

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise _must(f"{self._name}.name", "a non-empty name of letters, digits, '-' or '_'",
                        self.name)
        if self.directions.kind == "random" and (self.grid.x.auto or (self.grid.y and self.grid.y.auto)):
            raise _must(f"{self._name}.grid.x.min", "a number for random directions "
                        "(an automatic range fits a training path, which needs kind: pca)", None)


@dataclass(frozen=True)
class ModelConfig:
    """Where the model comes from and where its centre weights are."""

    source: str = "parabola"
    centre: str | None = None
    unsafe_deserialization: bool = False


@dataclass(frozen=True)
class DataConfig:
    """Where the evaluation data comes from (a built-in name, an .npz file, a directory with
    x.npy and y.npy, or module:function) and how many shards workers split it into."""

    source: str = "parabola"
    shards: int = 1

    def __post_init__(self):
        if isinstance(self.shards, bool) or not isinstance(self.shards, int) or self.shards < 1:
            raise _must("data.shards", "an integer >= 1", self.shards)


@dataclass(frozen=True)
class TrainConfig:
    """Training with a recorded path."""

    epochs: int = 100
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    record_every: int = 1
    record_unit: str = "epoch"
    seed: int = 0

    def __post_init__(self):
        for key in ("epochs", "batch_size", "record_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _must(f"train.{key}", "an integer >= 1", value)
        if not self.learning_rate > 0:
            raise _must("train.learning_rate", "a number > 0", self.learning_rate)
        if self.record_unit not in RECORD_UNITS:
            raise _must("train.record_unit", f"one of {RECORD_UNITS}", self.record_unit)


@dataclass(frozen=True)
class ClusterConfig:
    """The Ray pool: where Ray runs and how many actors with what resources."""

    address: str | None = None
    num_workers: int | None = None  # None: one per GPU when workers use GPUs, else one per CPU
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: 1 if the Ray cluster has GPUs, else 0
    max_tile_retries: int = 3

    def __post_init__(self):
        n = self.num_workers
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise _must("cluster.num_workers", "an integer >= 1 or null (automatic)", n)
        if not self.cpus_per_worker > 0:
            raise _must("cluster.cpus_per_worker", "a number > 0", self.cpus_per_worker)
        if self.gpus_per_worker is not None and not self.gpus_per_worker >= 0:
            raise _must("cluster.gpus_per_worker", "a number >= 0 or null (automatic)",
                        self.gpus_per_worker)
        if self.max_tile_retries < 0:
            raise _must("cluster.max_tile_retries", "an integer >= 0", self.max_tile_retries)

    @property
    def threads_per_worker(self) -> int:
        return max(1, int(self.cpus_per_worker))

    def resolve(self, resources: dict) -> "ClusterConfig":
        """Concrete worker count and GPUs per worker for a Ray cluster with ``resources``
        (``ray.cluster_resources()``): by default one worker per GPU where there are GPUs,
        else one per ``cpus_per_worker`` CPUs."""
        gpus = float(resources.get("GPU", 0.0))
        per_gpu = self.gpus_per_worker if self.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
        n = self.num_workers
        if n is None:
            if per_gpu > 0:
                n = int(gpus // per_gpu + 1e-9)
            else:
                n = int(float(resources.get("CPU", 1.0)) // self.cpus_per_worker + 1e-9)
            n = max(1, n)
        return dataclasses.replace(self, num_workers=n, gpus_per_worker=float(per_gpu))


@dataclass(frozen=True)
class EvaluationConfig:
    """How each worker evaluates: examples per data batch, memory for points per call, method."""

    batch_size: int | None = None
    memory_budget_mb: float = 256.0
    mode: str = "auto"

    def __post_init__(self):
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or self.batch_size < 1):
            raise _must("evaluation.batch_size", "an integer >= 1 or null (whole dataset)", self.batch_size)
        if not self.memory_budget_mb > 0:
            raise _must("evaluation.memory_budget_mb", "a number > 0", self.memory_budget_mb)
        if self.mode not in EVAL_MODES:
            raise _must("evaluation.mode", f"one of {EVAL_MODES}", self.mode)


@dataclass(frozen=True)
class PlotConfig:
    """Figures: number of contour levels, log spacing, file format, path overlay."""

    levels: int = 25
    log_levels: bool = True
    format: str = "png"
    show_path: str = "auto"
    dpi: int = 120
    preview_every_s: float | None = None  # redraw OUT/<slice>_preview.png while sweeping

    def __post_init__(self):
        if self.levels < 2:
            raise _must("plot.levels", "an integer >= 2", self.levels)
        if self.format not in ("png", "pdf", "svg"):
            raise _must("plot.format", "one of ('png', 'pdf', 'svg')", self.format)
        if self.preview_every_s is not None and not self.preview_every_s > 0:
            raise _must("plot.preview_every_s", "a number of seconds > 0 or null (no preview)",
                        self.preview_every_s)
        if self.show_path not in ("auto", "always", "never"):
            raise _must("plot.show_path", "one of ('auto', 'always', 'never')", self.show_path)


@dataclass(frozen=True)
class Config:
    """A whole run: model, data, training, the slices to sweep, the Ray pool, evaluation, plots."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    slices: tuple[SliceConfig, ...] = (SliceConfig(),)
    cluster: ClusterConfig = ClusterConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    plot: PlotConfig = PlotConfig()

    def __post_init__(self):
        if not self.slices:
            raise _must("slices", "a list of at least one slice", [])
        names = [s.name for s in self.slices]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise _must("slices", "a list of slices with distinct names", names,
                        f"Rename the repeated '{duplicated[0]}'.")

    def to_dict(self) -> dict:
        """The resolved configuration as plain YAML-able data."""
        return _to_plain(self)


# ---------------------------------------------------------------- building from plain data

def _to_plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name))
                for f in dataclasses.fields(value) if not f.name.startswith("_")}
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def _type_word(tp) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(tp, value, name: str):
    """Check ``value`` against the annotation ``tp`` and convert where lossless (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)][0]
        return _coerce(inner, value, name)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, name)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _must(name, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{name}.{i}") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _must(name, f"a list of {len(args)} values", value)
        return tuple(_coerce(a, v, f"{name}.{i}") for i, (a, v) in enumerate(zip(args, value)))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise _must(name, "true or false", value)
    if tp in (int, str) and (isinstance(value, bool) or not isinstance(value, tp)):
        raise _must(name, _type_word(tp), value)
    if tp is float and not isinstance(value, float):
        raise _must(name, "a number", value)
    return value


def build(cls, data, name: str = ""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data):
        return data
    label = name or "configuration"
    if not isinstance(data, dict):
        raise _must(label, "a mapping of settings", data)
    hints = typing.get_type_hints(cls)
    public = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    for key in data:
        if key not in public:
            close = difflib.get_close_matches(str(key), public, n=1)
            hint = f"Did you mean '{close[0]}'?" if close else f"Known settings: {', '.join(public)}."
            full = f"{name}.{key}" if name else str(key)
            raise ConfigError(f"Unknown setting '{full}'. {hint}")
    kwargs = {key: _coerce(hints[key], value, f"{name}.{key}" if name else key)
              for key, value in data.items()}
    if "_name" in {f.name for f in dataclasses.fields(cls)}:
        kwargs["_name"] = name or cls.__name__.lower()
    return cls(**kwargs)


def _axis(data, name):
    return build(AxisConfig, data, name)


def config_from_dict(data: dict) -> Config:
    """Build a :class:`Config` from plain data (as read from YAML).

    A top-level ``grid`` is the default for every slice; a slice's own ``grid`` keys override it.
    """
    data = dict(data or {})
    if not isinstance(data, dict):
        raise _must("configuration", "a mapping of settings", data)
    default_grid = data.pop("grid", None) or {}
    slices_data = data.pop("slices", None)
    if slices_data is None:
        slices_data = [{"name": "random"}]
    if not isinstance(slices_data, list):
        raise _must("slices", "a list of slices", slices_data)
    slices = []
    for i, raw in enumerate(slices_data):
        if not isinstance(raw, dict):
            raise _must(f"slices.{i}", "a mapping of settings", raw)
        raw = dict(raw)
        grid = _merge(default_grid, raw.pop("grid", None) or {})
        slices.append(_build_slice(raw, grid, f"slices.{i}"))
    cfg = build(Config, data)
    return dataclasses.replace(cfg, slices=tuple(slices))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _build_slice(raw: dict, grid: dict, name: str) -> SliceConfig:
    if not isinstance(grid, dict):
        raise _must(f"{name}.grid", "a mapping of settings", grid)
    grid = dict(grid)
    for key in grid:
        if key not in ("x", "y", "tile", "order"):
            close = difflib.get_close_matches(str(key), ["x", "y", "tile", "order"], n=1)
            hint = f"Did you mean '{close[0]}'?" if close else "Known settings: x, y, tile, order."
            raise ConfigError(f"Unknown setting 'grid.{key}'. {hint}")
    x = _axis(grid.get("x"), "grid.x")
    y = None if ("y" in grid and grid["y"] is None) else _axis(grid.get("y"), "grid.y")
    tile = _coerce(tuple[int, int], grid.get("tile", [16, 16]), "grid.tile")
    if "tile" not in grid:  # the default tile shrinks to fit small grids
        tile = (min(tile[0], 1 if y is None else y.points), min(tile[1], x.points))
    elif y is None:
        tile = (1, tile[1])
    order = _coerce(str, grid.get("order", "coarse_to_fine"), "grid.order")
    grid_cfg = GridConfig(x=x, y=y, tile=tile, order=order)
    directions = build(DirectionConfig, raw.pop("directions", None), f"{name}.directions")
    kwargs = {k: _coerce(str, v, f"{name}.{k}") for k, v in raw.items() if k == "name"}
    unknown = [k for k in raw if k != "name"]
    if unknown:
        close = difflib.get_close_matches(unknown[0], ["name", "directions", "grid"], n=1)
        hint = f"Did you mean '{close[0]}'?" if close else "Known settings: name, directions, grid."
        raise ConfigError(f"Unknown setting '{name}.{unknown[0]}'. {hint}")
    return SliceConfig(directions=directions, grid=grid_cfg, _name=name, **kwargs)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to plain config data."""
    data = _merge({}, data or {})
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"The override {item!r} must look like 'section.key=value', "
                              f"for example 'grid.x.points=21'.")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"The override '{key}' names list item '{part}' of "
                                      f"'{'.'.join(parts[:depth])}', which has {len(node)} items.")
                node = node[int(part)]
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
        last = parts[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config file (or none: all defaults) and apply overrides."""
    data = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"The config file '{path}' does not exist. Give the path of a YAML file, "
                              f"for example configs/parabola.yaml.")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"The config file '{path}' is not valid YAML: {str(err).splitlines()[0]}")
        if not isinstance(data, dict):
            raise ConfigError(f"The config file '{path}' must hold a mapping of settings. "
                              f"Got {type(data).__name__} instead.")
    return config_from_dict(apply_overrides(data, list(overrides)))
