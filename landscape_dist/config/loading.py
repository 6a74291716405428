"""Building the configuration from YAML: type checks, unknown keys, per-slice grids, overrides.

Every setting has a dotted name (``grid.x.points``, ``slices.1.directions.kind``); errors name it,
say what it must be, what it got, and how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path

import yaml

from ..registry import OUTPUT_FORMATS, PLANE_KINDS, OutputFormat
from .files import parse_yaml, read_config_file, yaml_problem
from .rules import check_seeds
from .schema import (DEFAULT_ORDER, DEFAULT_TILE, TILE_ORDERS, AxisConfig, Config, ConfigError,
                     FidelityConfig, GridConfig, RefineConfig, SettingError, SliceConfig, must)

GRID_KEYS = ("x", "y", "tile", "order", "refine", "fidelity")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
SLICE_KEYS = ("name", "directions", "grid", "quantities")
_PROBE = "\0"  # a string no setting with choices accepts (see _choice_error)


def unknown_setting(key, known, where: str = "") -> ConfigError:
    """'Unknown setting ...' with the nearest known name suggested, or the list of known ones."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"Did you mean '{close[0]}'?" if close else f"Known settings: {', '.join(known)}."
    full = f"{where}.{key}" if where else str(key)
    return ConfigError(f"Unknown setting '{full}'. {hint}")


def _type_word(tp) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(tp, value, name: str):
    """Check ``value`` against the annotation ``tp`` and convert where lossless (int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        mapping = [o for o in inner if typing.get_origin(o) is dict]
        if isinstance(value, dict) and mapping:
            return _coerce(mapping[0], value, name)
        return _coerce(inner[0], value, name)
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, dict) or not value:
            raise must(name, "a non-empty mapping", value)
        return {_coerce(key_type, k, f"{name}.{k}"): _coerce(value_type, v, f"{name}.{k}")
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, name)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise must(name, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{name}.{i}") for i, v in enumerate(value))
        if len(value) != len(args):
            raise must(name, f"a list of {len(args)} values", value)
        return tuple(_coerce(a, v, f"{name}.{i}") for i, (a, v) in enumerate(zip(args, value)))
    if tp is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads '1e6' (no dot, no exponent sign) as a string
        elif isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, float):
            raise must(name, "a number", value)
        if not math.isfinite(value):
            raise must(name, "a finite number", value)
        return value
    if tp is bool and not isinstance(value, bool):
        raise must(name, "true or false", value)
    if tp in (int, str) and (isinstance(value, bool) or not isinstance(value, tp)):
        raise must(name, _type_word(tp), value)
    return value


def construct(cls, kwargs: dict, name: str):
    """``cls(**kwargs)``, its own errors placed under ``name``; its seeds checked (every field
    named as a seed, see :func:`~landscape_dist.config.rules.check_seeds`)."""
    try:
        obj = cls(**kwargs)
        check_seeds(obj)
        return obj
    except SettingError as err:
        raise err.under(name) from None


def build(cls, data, name: str = ""):
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data):
        return data
    if not isinstance(data, dict):
        raise must(name or "configuration", "a mapping of settings", data)
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in known:
            raise unknown_setting(key, known, name)
    kwargs, wrong = {}, None
    for key, value in data.items():
        try:
            kwargs[key] = _coerce(hints[key], value, f"{name}.{key}" if name else key)
        except SettingError as err:
            if wrong is not None or hints[key] is not str or isinstance(value, str):
                raise
            kwargs[key], wrong = _PROBE, (key, value, err)  # a choice? its check will say
    if wrong is not None:
        raise _choice_error(cls, kwargs, name, *wrong)
    return construct(cls, kwargs, name)


def _choice_error(cls, kwargs: dict, name: str, key: str, value, type_error: SettingError):
    """The error for a string setting given a value of another type: when the setting is a
    choice (its class refuses any other string with 'one of ...'), the choices and the value
    given; else ``type_error``."""
    try:
        construct(cls, kwargs, name)
    except SettingError as err:
        if err.setting == type_error.setting and err.requirement.startswith("one of"):
            return SettingError(err.setting, err.requirement, value, err.fix, err.at)
    return type_error


def config_from_dict(data: dict) -> Config:
    """Build a :class:`Config` from plain data (as read from YAML).

    A top-level ``grid`` is the default for every slice; a slice's own ``grid`` keys override it.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise must("configuration", "a mapping of settings", data)
    known = [f.name for f in dataclasses.fields(Config)]
    known.insert(known.index("slices"), "grid")  # every top-level setting, as a file orders them
    for key in data:
        if key not in known:
            raise unknown_setting(key, known)
    data = dict(data)
    default_grid = data.pop("grid", None) or {}
    if not isinstance(default_grid, dict):
        raise must("grid", "a mapping of settings", default_grid)
    slices_data = data.pop("slices", None)
    if slices_data is None:
        slices_data = [{"name": "random"}]
    if not isinstance(slices_data, list):
        raise must("slices", "a list of slices", slices_data)
    slices = []
    for i, raw in enumerate(slices_data):
        if not isinstance(raw, dict):
            raise must(f"slices.{i}", "a mapping of settings", raw)
        raw = dict(raw)
        own_grid = raw.pop("grid", None) or {}
        grid = _merge(default_grid, own_grid) if isinstance(own_grid, dict) else own_grid
        slices.extend(_expand(_build_slice(raw, grid, f"slices.{i}", own_grid)))
    options = _format_options(data)
    config = build(Config, data)
    return dataclasses.replace(config, slices=tuple(slices),
                               plot=dataclasses.replace(config.plot, options=options))


def _format_options(data: dict) -> dict:
    """``plot.options``: each named output format's own settings, built as the dataclass the
    format declares (removed from ``data``, which keeps the rest of ``plot``)."""
    plot = data.get("plot")
    if not isinstance(plot, dict) or plot.get("options") is None:
        return {}
    plot = dict(plot)
    raw = plot.pop("options")
    data["plot"] = plot
    if not isinstance(raw, dict):
        raise must("plot.options", "a mapping of output format names to their settings", raw)
    options = {}
    for name, settings in raw.items():
        entry = OUTPUT_FORMATS[name] if name in OUTPUT_FORMATS else None
        if not isinstance(entry, OutputFormat):
            with_settings = [n for n in OUTPUT_FORMATS.names()
                             if isinstance(OUTPUT_FORMATS[n], OutputFormat)]
            raise must("plot.options", f"a mapping whose keys are output formats with settings of "
                       f"their own ({', '.join(with_settings) or 'none registered'})", name)
        options[name] = build(entry.settings, settings, f"plot.options.{name}")
    return options


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _build_grid(grid, name: str = "grid") -> GridConfig:
    """A grid from plain data; its errors are named ``grid.*`` whether the keys came from the
    top-level grid or a slice's own."""
    if not isinstance(grid, dict):
        raise must(name, "a mapping of settings", grid)
    for key in grid:
        if key not in GRID_KEYS:
            raise unknown_setting(key, GRID_KEYS, name)
    x = build(AxisConfig, grid.get("x"), f"{name}.x")
    y = None if ("y" in grid and grid["y"] is None) else build(AxisConfig, grid.get("y"), f"{name}.y")
    tile = _coerce(tuple[int, int], grid.get("tile", list(DEFAULT_TILE)), f"{name}.tile")
    if "tile" not in grid:  # the default tile shrinks to fit small grids
        tile = (min(tile[0], 1 if y is None else y.points), min(tile[1], x.points))
    elif y is None:
        tile = (1, tile[1])
    order = grid.get("order", DEFAULT_ORDER)
    if not isinstance(order, str):
        raise must(f"{name}.order", f"one of {TILE_ORDERS}", order)
    refine = grid.get("refine")
    if refine is True:  # 'refine: true': the default settings
        refine = {}
    fidelity = grid.get("fidelity")
    for key, value in (("refine", refine), ("fidelity", fidelity)):
        # 0 equals False: 'refine: 0' is a number, not the switch turned off
        if value is not None and not isinstance(value, (bool, dict)):
            raise must(f"{name}.{key}", "true, false or a mapping of settings", value,
                       f"Give {key}: true for the defaults, or false for none.")
    refine = None if refine in (None, False) else build(RefineConfig, refine, f"{name}.refine")
    fidelity = (None if fidelity in (None, False)
                else build(FidelityConfig, {} if fidelity is True else fidelity, f"{name}.fidelity"))
    return construct(GridConfig, {"x": x, "y": y, "tile": tile, "order": order, "refine": refine,
                                  "fidelity": fidelity}, name)


def _build_directions(data, name: str):
    """The directions of a slice, built as the dataclass its plane kind declares."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise must(name, "a mapping of settings", data)
    kind = data.get("kind", "random")
    if isinstance(kind, str) and kind in PLANE_KINDS:
        return build(PLANE_KINDS[kind].config, data, name)
    return build(PLANE_KINDS["random"].config, data, name)  # reports the unknown kind


def _check_keys(data, cls, where: str) -> None:
    """Unknown keys of ``data`` (and of its nested dataclass fields) named under ``where``."""
    if not isinstance(data, dict):
        return
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        if key not in known:
            raise unknown_setting(key, known, where)
        inner = [t for t in typing.get_args(hints[key]) or (hints[key],) if dataclasses.is_dataclass(t)]
        if inner:
            _check_keys(value, inner[0], f"{where}.{key}")


def _has(data: dict, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _build_slice(raw: dict, grid: dict, name: str, own_grid: dict) -> SliceConfig:
    """A slice from its settings; ``grid`` is the top-level grid merged with ``own_grid``, the
    slice's own grid settings (errors in those are named under the slice)."""
    if not isinstance(own_grid, dict):
        raise must(f"{name}.grid", "a mapping of settings", own_grid)
    for key in own_grid:
        if key not in GRID_KEYS:
            raise unknown_setting(key, GRID_KEYS, f"{name}.grid")
    for axis in ("x", "y"):
        _check_keys(own_grid.get(axis), AxisConfig, f"{name}.grid.{axis}")
    try:
        grid_cfg = _build_grid(grid)
    except SettingError as err:
        relative = err.setting.removeprefix("grid.")
        if _has(own_grid, relative) or (relative == "tile" and "tile" in own_grid):
            raise SettingError(f"{name}.grid.{relative}", err.requirement, err.got, err.fix,
                               f"{name}.grid.") from None
        if relative in ("refine", "fidelity") and "y" in own_grid and own_grid["y"] is None:
            # the top-level grid's switch, inherited by a slice made 1-D: the fix is the slice's
            raise SettingError(f"{name}.grid.{relative}", err.requirement, err.got,
                               f"Give this slice '{relative}: false' in its grid, or a y axis.",
                               f"{name}.grid.") from None
        raise
    directions = _build_directions(raw.pop("directions", None), f"{name}.directions")
    for key in raw:
        if key not in SLICE_KEYS:
            raise unknown_setting(key, SLICE_KEYS, name)
    hints = typing.get_type_hints(SliceConfig)
    kwargs = {k: _coerce(hints[k], v, f"{name}.{k}") for k, v in raw.items()}
    return construct(SliceConfig, {"directions": directions, "grid": grid_cfg, **kwargs}, name)


def _expand(slice_cfg: SliceConfig) -> list[SliceConfig]:
    """The slices a configured slice stands for, as its plane kind expands it (a random slice
    with ``seeds``: one slice per seed)."""
    return PLANE_KINDS[slice_cfg.directions.kind].expand(slice_cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to plain config data."""
    data = _merge({}, data or {})
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"The override {item!r} must look like 'section.key=value', "
                              f"for example 'grid.x.points=21'.")
        try:
            value = parse_yaml(raw, f"The override of '{key}'") if raw.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"The override {item!r} has a value that is not valid YAML "
                              f"({yaml_problem(err)}). Quote it or fix it.") from None
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                where = ".".join(parts[:depth])
                if not part.isdigit():
                    raise ConfigError(f"The override '{key}' names '{part}' in the list '{where}', "
                                      f"whose items are numbered from 0: write "
                                      f"'{where}.0.{'.'.join(parts[depth:])}=...'.")
                if int(part) >= len(node):
                    raise ConfigError(f"The override '{key}' names list item '{part}' of "
                                      f"'{where}', which has {len(node)} items.")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif last:
                node[part] = value
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
    return data


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config file (or none: all defaults) and apply overrides (see
    :func:`~landscape_dist.config.files.read_config_file` for what a file must be)."""
    data = {} if path is None else read_config_file(Path(path))
    return config_from_dict(apply_overrides(data, list(overrides)))


def as_config(config) -> Config:
    """``config`` itself, or the YAML file it names loaded: what a library command's ``config``
    argument may be. Raises TypeError for anything else."""
    if isinstance(config, (str, Path)):
        return load_config(config)
    if not isinstance(config, Config):
        raise TypeError(f"The 'config' argument must be a Config (ld.load_config(...)) or the "
                        f"path of a YAML file. Got {type(config).__name__} instead.")
    return config
