"""Reading the surface file back (its layout: :mod:`landscape_dist.store.surface`): each slice as a
:class:`Surface`, the file checked first and a damaged or unfinished one named in one line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import yaml

from ..core.layout import WeightLayout
from ..core.quantities import main_loss
from ..errors import OutputError
from ..model.trajectory import open_hdf5

FORMAT = "landscape_dist.surface"
FORMAT_VERSION = 1


@dataclass
class CurveOnPlane:
    """A curve on a slice's plane evaluated beside its grid: t (T,), plane coordinates (T, k),
    the values at its points by quantity, its attributes (the barrier)."""

    t: np.ndarray
    coords: np.ndarray
    values: dict
    meta: dict = field(default_factory=dict)


@dataclass
class PathOnPlane:
    """The training path expressed in a slice's plane."""

    coords: np.ndarray
    residual: np.ndarray
    relative_residual: np.ndarray
    distance: np.ndarray
    step: np.ndarray
    epoch: np.ndarray
    values: dict = field(default_factory=dict)


@dataclass
class Surface:
    """One slice read back from a surface file."""

    name: str
    xcoordinates: np.ndarray
    ycoordinates: np.ndarray | None
    values: dict
    done: np.ndarray
    meta: dict
    centre: np.ndarray
    directions: np.ndarray
    layout: WeightLayout
    non_trainable: list
    path: PathOnPlane | None
    non_trainable_directions: list | None = None  # k lists, where statistics move with the plane
    runs: dict = field(default_factory=dict)  # further training runs' paths, 'run1'...
    filled: dict = field(default_factory=dict)  # refined slices: the interpolated picture
    interpolated: np.ndarray | None = None  # ... and where it is interpolated
    cheap: dict = field(default_factory=dict)  # two fidelities: the subset's evaluated values
    cheap_done: np.ndarray | None = None  # ... and where they were evaluated
    filled_std: dict = field(default_factory=dict)  # two fidelities: the estimate's deviation
    curves: dict = field(default_factory=dict)  # curves evaluated beside the grid, by name

    @property
    def shown(self) -> dict:
        """What figures draw: the interpolated picture of a refined slice, else the values."""
        return self.filled or self.values

    @property
    def refinement(self) -> dict | None:
        """How a refined slice was evaluated (points evaluated, of how many), else None."""
        return self.meta.get("refinement")

    @property
    def fidelity(self) -> dict | None:
        """How a two-fidelity slice was evaluated (full-data and subset points), else None."""
        return self.meta.get("fidelity")

    @property
    def ndim(self) -> int:
        return 1 if self.ycoordinates is None else 2

    @property
    def loss_name(self) -> str:
        """The loss figures follow: ``loss``, or the first dataset's ``<dataset>/loss``."""
        return main_loss(self.values)

    @property
    def datasets(self) -> list[str]:
        """The datasets of a surface evaluated on several ('' when on one)."""
        names = [n[:-len("/loss")] for n in self.values if n.endswith("/loss")]
        return names or [""]


def read_attr(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _path(group) -> PathOnPlane:
    vals = _datasets(group["values"]) if "values" in group else {}
    return PathOnPlane(group["coords"][...], group["residual"][...], group["relative_residual"][...],
                       group["distance"][...], group["step"][...], group["epoch"][...], vals)


def _datasets(group) -> dict:
    """Every dataset under ``group`` by its path relative to it ('loss', 'test/loss')."""
    out = {}
    group.visititems(lambda name, item: out.__setitem__(name, item[...])
                     if isinstance(item, h5py.Dataset) else None)
    order = json.loads(group.attrs["order"]) if "order" in group.attrs else []
    return {**{k: out[k] for k in order if k in out}, **out}


def _curves(group) -> dict:
    return {name: CurveOnPlane(g["t"][...], g["coords"][...], _datasets(g["values"]),
                               {k: read_attr(v) for k, v in g.attrs.items()})
            for name, g in group.items()}


def open_surface(path: str | Path):
    """``path`` open for reading (a context manager yielding the ``h5py.File``), read through
    :func:`~landscape_dist.model.trajectory.open_hdf5`: a missing, damaged or locked file, or a
    directory, is refused in one line, whether opening it or reading it inside the block."""
    return open_hdf5(path, "surface file", "Give a surface.h5 written by {sweep}.", OutputError,
                     sweep="sweep()")


def check_surface(path: str | Path, unfinished: bool = False) -> None:
    """Refuse a file that is not a finished surface file (see :func:`read_surface`), or one
    that is damaged anywhere (every attribute and dataset is read once)."""
    path = Path(path)
    with open_surface(path) as f:
        _check(f, path, unfinished)
        _read_through(f)


def _read_through(f) -> None:
    """Read every attribute and dataset of ``f`` once, so that damaged bytes anywhere in it
    (each dataset chunk carries a checksum) raise here rather than in a later reader."""
    def visit(name, item):
        dict(item.attrs)
        if isinstance(item, h5py.Dataset):
            item[...]

    dict(f.attrs)
    f.visititems(visit)


def _check(f, path: Path, unfinished: bool) -> None:
    if f.attrs.get("format") != FORMAT:
        raise OutputError(f"The file '{path}' is not a landscape_dist surface file. Give a "
                          f"surface.h5 written by {{sweep}}.", sweep="sweep()")
    complete = bool(f.attrs.get("complete", not path.name.endswith(".partial")))
    if not complete and not unfinished:
        raise OutputError(f"The surface file '{path}' is of a sweep that has not finished "
                          f"({_progress(f)}). Run the same {{sweep}} again to finish it.",
                          sweep="sweep()")


def _progress(f) -> str:
    """'slice 'a': 120 of 2601 points done, slice 'b': not started' of an unfinished file."""
    parts = []
    for name in json.loads(f.attrs["slices"]):
        done = f["slices"][name]["done"]
        parts.append(f"slice '{name}': {int(np.sum(done[...]))} of {done.size} points done")
    return ", ".join(parts) or "no slice started"


def read_surface(path: str | Path, unfinished: bool = False) -> dict[str, Surface]:
    """All slices of a surface file, by name, in the order they were written.

    Refuses the file of a sweep that has not finished (saying how far it got) unless
    ``unfinished``; its points not yet done are NaN with ``done`` False.
    """
    path = Path(path)
    with open_surface(path) as f:
        _check(f, path, unfinished)
        out = {}
        for name in json.loads(f.attrs["slices"]):
            g = f["slices"][name]
            p = _path(g["path"]) if "path" in g else None
            runs = {name: _path(group) for name, group in g["paths"].items()} if "paths" in g else {}
            plane = g["plane"]
            layout = WeightLayout.from_attrs(plane.attrs)
            nt = [plane["non_trainable"][str(i)][...] for i in range(len(plane["non_trainable"]))]
            moving = None
            if "non_trainable_directions" in plane:
                group = plane["non_trainable_directions"]
                moving = [[group[str(j)][str(i)][...] for i in range(len(nt))]
                          for j in range(len(group))]
            values, filled, interpolated = _datasets(g["values"]), {}, None
            if "filled" in g:
                filled = {q: g["filled"][q][...] for q in values}
                interpolated = g["filled"]["interpolated"][...]
            extra = {}
            if "cheap" in g:  # two fidelities
                extra = {"cheap": _datasets(g["cheap"]["values"]),
                         "cheap_done": g["cheap"]["done"][...],
                         "filled_std": _datasets(g["filled/std"]) if "filled/std" in g else {}}
            if "curves" in g:  # kind: curve
                extra["curves"] = _curves(g["curves"])
            out[name] = Surface(
                name, g["xcoordinates"][...], g["ycoordinates"][...] if "ycoordinates" in g else None,
                values, g["done"][...],
                {k: read_attr(v) for k, v in g.attrs.items()}, plane["centre"][...],
                plane["directions"][...], layout, nt, p, moving, runs, filled, interpolated, **extra)
        return out


def read_run_info(path: str | Path) -> dict:
    """The resolved configuration and package versions stored in a surface file."""
    with open_surface(path) as f:
        return {"config": yaml.safe_load(f.attrs["config"]), "versions": json.loads(f.attrs["versions"])}
