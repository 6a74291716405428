"""The surface file (HDF5): every slice with its coordinates, values, done-mask and plane.

Layout::

    /                         attrs: format, format_version, slices, config (YAML), versions (JSON)
    /xcoordinates ...         Li et al.-compatible datasets of the first slice (see below)
    /slices/<name>/           attrs: direction metadata (kind, normalization, seed, norms, cosine,
                                     explained_variance_ratio), numbers (JSON: loss at the centre,
                                     local quadratic curvature, basin widths; derived, not evaluated)
        xcoordinates (nx,)    ycoordinates (ny,)            (2-D slices only)
        values/<quantity>     (ny, nx), or (nx,) for 1-D;  NaN until computed; attr order
                              (<dataset>/<quantity> for several datasets)
        done                  same shape, bool
        filled/<quantity>     refined slices only (grid.refine): the picture interpolated between
        filled/interpolated   the evaluated points, and where it is interpolated (bool); attrs
                              kind, refinement (JSON: points evaluated, steps, settings)
                              two fidelities (grid.fidelity): the estimated picture, its
                              standard deviation filled/std/<quantity>, attr fidelity (JSON)
        cheap/values/<q>      two fidelities: the values evaluated on the subset of the
        cheap/done            examples (attrs examples, of, examples_seed), NaN elsewhere
        plane/centre (size,)  plane/directions (k, size)  plane/non_trainable/<i>
                              plane/non_trainable_directions/<j>/<i> (statistics that move)
                              attrs layout_names, layout_shapes (JSON)
        path/coords (T, k)  path/residual (T,)  path/relative_residual (T,)  path/distance (T,)
        path/step  path/epoch     (distance: from the centre; residual: from the plane)
        path/values/<quantity> (T,)   the true loss and metrics at the recorded weights
        paths/run<i>/...      the same for further training runs (train.runs)
        curves/<curve>/t (T,)  curves/<curve>/coords (T, k)  curves/<curve>/values/<quantity>
                              (T,): curves on the plane evaluated beside the grid (kind: curve:
                              'curve' and 'line'), attr barrier (JSON, by loss)

``values[j, i]`` is the value at ``(xcoordinates[i], ycoordinates[j])``. At the root,
``xcoordinates``, ``ycoordinates`` and ``train_loss`` are hard links to the first slice's datasets
and ``train_acc`` holds its accuracy in percent, the layout that Li et al.'s ``plot_2D.py`` and
``plot_1D.py`` read.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import yaml

from ..core.grid import PointTile, Tile
from ..core.plane import Plane
from .blocks import BlockBuffer
from .reading import FORMAT, FORMAT_VERSION
from .reading import (CurveOnPlane, PathOnPlane, Surface, check_surface,  # noqa: F401 (their old home)
                      open_surface, read_attr, read_run_info, read_surface)

_ACCURACY_NAMES = ("accuracy", "sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy")


def _reference_names(names) -> dict:
    """Li et al.'s root datasets and the quantities they hold: ``train_loss`` (and ``train_acc``)
    for one dataset; ``<dataset>_loss`` and ``<dataset>_acc`` for each of several."""
    names = list(names)
    if "loss" in names:
        return {"train": ("loss", _accuracy_name(names))}
    out = {}
    for name in names:
        if name.endswith("/loss"):
            dataset = name[:-len("/loss")]
            inner = [n[len(dataset) + 1:] for n in names if n.startswith(f"{dataset}/")]
            acc = _accuracy_name(inner)
            out[dataset] = (name, f"{dataset}/{acc}" if acc else None)
    return out


def _accuracy_name(names) -> str | None:
    return next((n for n in _ACCURACY_NAMES if n in names), None)


CHUNK_POINTS = (256, 256)  # a values chunk: what the write-behind buffer writes at once


def _chunks(shape: tuple) -> tuple:
    """The chunk shape of a slice's values and done mask: whole blocks of the grid, so that the
    write-behind buffer (``store.blocks``) writes each chunk in one piece."""
    if len(shape) == 1:
        return (min(shape[0], CHUNK_POINTS[0] * CHUNK_POINTS[1]),)
    return tuple(min(n, c) for n, c in zip(shape, CHUNK_POINTS))


def _dataset(group, name: str, data=None, **kwargs):
    """``group.create_dataset(name, ...)`` with a Fletcher-32 checksum on every chunk, so that
    damaged bytes fail to read (h5py raises) instead of reading back as other numbers; a scalar
    or empty dataset, which HDF5 cannot chunk, is stored plainly."""
    shape = np.shape(data) if data is not None else kwargs.get("shape")
    if shape and all(shape):
        kwargs["fletcher32"] = True
    return group.create_dataset(name, data=data, **kwargs)


class SurfaceWriter:
    """Creates a surface file and writes slices into it; the only writer of the file."""

    def __init__(self, path: str | Path, config: dict, versions: dict):
        self.path = Path(path)
        self.file = h5py.File(self.path, "w", libver=("v110", "latest"))  # checksummed metadata
        self.file.attrs["format"] = FORMAT
        self.file.attrs["format_version"] = FORMAT_VERSION
        self.file.attrs["config"] = yaml.safe_dump(config, sort_keys=False)
        self.file.attrs["versions"] = json.dumps(versions)
        self.file.attrs["slices"] = json.dumps([])
        self.file.attrs["complete"] = False  # set by finish(): every slice of the sweep is in
        self.file.create_group("slices")
        self._slices: list = []  # their write-behind buffers are flushed before the file closes

    def add_slice(self, name: str, xs: np.ndarray, ys: np.ndarray | None, names, plane: Plane,
                  non_trainable) -> "SliceWriter":
        """Create slice ``name``: coordinates ``xs`` (nx,) and ``ys`` (ny,) or None, an empty
        dataset per quantity in ``names``, the plane and the non-trainable values at its centre."""
        group = self.file["slices"].create_group(name)
        for key, value in plane.meta.items():
            group.attrs[key] = value if not isinstance(value, (dict, list, tuple)) else json.dumps(value)
        _dataset(group, "xcoordinates", data=np.asarray(xs, np.float64))
        shape = (len(xs),) if ys is None else (len(ys), len(xs))
        if ys is not None:
            _dataset(group, "ycoordinates", data=np.asarray(ys, np.float64))
        values = group.create_group("values")
        values.attrs["order"] = json.dumps(list(names))  # HDF5 lists names alphabetically
        chunks = _chunks(shape)
        for quantity in names:
            _dataset(values, quantity, shape=shape, dtype="f8", fillvalue=np.nan, chunks=chunks)
        _dataset(group, "done", shape=shape, dtype=bool, fillvalue=False, chunks=chunks)
        stored = group.create_group("plane")
        _dataset(stored, "centre", data=np.asarray(plane.centre, np.float32))
        _dataset(stored, "directions", data=np.atleast_2d(np.asarray(plane.directions, np.float32)))
        stored.attrs.update(plane.layout.to_attrs())
        nt = stored.create_group("non_trainable")
        for i, value in enumerate(non_trainable):
            _dataset(nt, str(i), data=np.asarray(value))
        if plane.non_trainable_directions is not None:  # statistics that move with the weights
            moving = stored.create_group("non_trainable_directions")
            for j, values in enumerate(plane.non_trainable_directions):
                for i, value in enumerate(values):
                    _dataset(moving, f"{j}/{i}", data=np.asarray(value))
        listed = json.loads(self.file.attrs["slices"]) + [name]
        self.file.attrs["slices"] = json.dumps(listed)
        if len(listed) == 1:
            self._link_reference_layout(group, names, shape)
        self.file.flush()
        return SliceWriter(self, group, shape, is_reference=len(listed) == 1)

    def _link_reference_layout(self, group, names, shape):
        root = self.file
        root["xcoordinates"] = group["xcoordinates"]
        if "ycoordinates" in group:
            root["ycoordinates"] = group["ycoordinates"]
        for dataset, (loss, acc) in _reference_names(names).items():
            root[f"{dataset}_loss"] = group[f"values/{loss}"]
            if acc:
                _dataset(root, f"{dataset}_acc", shape=shape, dtype="f8", fillvalue=np.nan,
                         chunks=_chunks(shape))

    def finish(self) -> None:
        """Mark the file complete (every slice swept) and close it."""
        self.file.attrs["complete"] = True
        self.close()

    def close(self) -> None:
        """Write what the slices hold in memory (also on interruption), then close the file."""
        if self.file:
            try:
                for writer in self._slices:
                    writer.flush()
            finally:
                self.file.close()


class SliceWriter:
    """Writes one slice's tiles and path into the surface file as they arrive."""

    def __init__(self, parent: SurfaceWriter, group, shape, is_reference: bool):
        self.parent = parent
        self.group = group
        self.shape = shape
        self.is_reference = is_reference  # the first slice also feeds the root's train_acc
        names = json.loads(group["values"].attrs["order"])
        self._names = {q: f"values/{q}" for q in names}  # a quantity's name in the buffer
        datasets = {self._names[q]: group["values"][q] for q in names}
        self._percent = {}  # the root's train_acc: accuracy in percent
        if is_reference:
            for dataset, (_, acc) in _reference_names(names).items():
                if acc:
                    self._percent[acc] = f"{dataset}_acc"
                    datasets[f"{dataset}_acc"] = parent.file[f"{dataset}_acc"]
        datasets["done"] = group["done"]
        self.buffer = BlockBuffer(datasets, mask="done")
        parent._slices.append(self)  # flushed before the file closes

    def write_tile(self, tile: Tile | PointTile, result: dict) -> None:
        """Store a tile's values (flat, row-major) and mark its points done."""
        self.write_tiles([(tile, result)])

    def write_tiles(self, tiles: list) -> None:
        """Store tiles' values ``[(tile, {quantity: flat row-major array}), ...]`` and mark
        their points done: held in memory and written a chunk at a time (see ``store.blocks``);
        in the file once a chunk is complete, on :meth:`flush`, and when the file closes."""
        for tile, result in tiles:
            values = {self._names[q]: v for q, v in result.items()}
            for acc, root in self._percent.items():
                values[root] = 100.0 * np.asarray(result[acc])
            self.buffer.add(tile, values)

    def flush(self) -> None:
        """Write every value held in memory into the file."""
        self.buffer.flush()
        self.parent.file.flush()

    def write_filled(self, pictures: dict, interpolated: np.ndarray, meta: dict,
                     kind: str | None = None, key: str = "refinement",
                     std: dict | None = None) -> None:
        """Store the interpolated picture of a refined slice beside its evaluated values:
        ``filled/<quantity>`` and ``filled/interpolated`` (True where a value is interpolated,
        not evaluated), labelled as interpolations in the group's attributes. ``kind`` and
        ``key``: another label and the attribute ``meta`` goes to (two fidelities: estimated,
        ``fidelity``); ``std``: the estimate's standard deviation by quantity (``filled/std/``)."""
        group = self.group.create_group("filled")
        group.attrs["kind"] = kind or ("interpolated: hierarchical bilinear interpolation of the "
                                       "evaluated points (values/ holds only evaluated values)")
        group.attrs[key] = self.group.attrs[key] = json.dumps(meta)
        for quantity, picture in pictures.items():
            _dataset(group, quantity, data=np.asarray(picture, np.float64))
        for quantity, picture in (std or {}).items():
            _dataset(group, f"std/{quantity}", data=np.asarray(picture, np.float64))
        _dataset(group, "interpolated", data=np.asarray(interpolated, bool))
        self.parent.file.flush()

    def add_group(self, where: str, names, attrs: dict) -> "SliceWriter":
        """A writer of values evaluated otherwise than ``values/`` (two fidelities' subset:
        ``cheap``): ``<where>/values/<quantity>`` and ``<where>/done`` of the slice's shape,
        described by ``attrs``; its ``write_tile`` writes there."""
        group = self.group.create_group(where)
        for name, value in attrs.items():
            group.attrs[name] = value if isinstance(value, (int, float, str)) else json.dumps(value)
        values = group.create_group("values")
        values.attrs["order"] = json.dumps(list(names))
        chunks = _chunks(self.shape)
        for quantity in names:
            _dataset(values, quantity, shape=self.shape, dtype="f8", fillvalue=np.nan, chunks=chunks)
        _dataset(group, "done", shape=self.shape, dtype=bool, fillvalue=False, chunks=chunks)
        self.parent.file.flush()
        return SliceWriter(self.parent, group, self.shape, is_reference=False)

    def read(self, quantity: str) -> np.ndarray:
        """The values of ``quantity`` stored so far (NaN where not done)."""
        self.flush()
        return self.group["values"][quantity][...]

    def write_attr(self, name: str, value) -> None:
        """A further attribute of the slice (JSON for structured values)."""
        self.group.attrs[name] = value if isinstance(value, (int, float, str)) else json.dumps(value)

    def write_numbers(self, numbers: dict) -> dict:
        """Store numbers derived from the slice (attribute ``numbers``, JSON); returns them."""
        self.group.attrs["numbers"] = json.dumps(numbers)
        self.parent.file.flush()
        return numbers

    def write_path(self, coords, residual, relative, distance, step, epoch,
                   values: dict | None, where: str = "path") -> None:
        """Store a path on the plane under ``where`` ('path', or 'paths/run<i>' for further
        training runs)."""
        path = self.group.require_group(where)
        for name, data in (("coords", coords), ("residual", residual),
                           ("relative_residual", relative), ("distance", distance),
                           ("step", step), ("epoch", epoch)):
            _dataset(path, name, data=np.asarray(data))
        if values:
            group = path.create_group("values")
            group.attrs["order"] = json.dumps(list(values))
            for quantity, data in values.items():
                _dataset(group, quantity, data=np.asarray(data, np.float64))
        self.parent.file.flush()


    def write_curve(self, name: str, t, coords, values: dict, attrs: dict) -> None:
        """Store a curve on the plane evaluated beside the grid under ``curves/<name>``: its
        parameter ``t`` (T,), plane coordinates (T, k), the values at its points and ``attrs``
        (JSON for structured values)."""
        group = self.group.require_group("curves").create_group(name)
        _dataset(group, "t", data=np.asarray(t, np.float64))
        _dataset(group, "coords", data=np.asarray(coords, np.float64))
        stored = group.create_group("values")
        stored.attrs["order"] = json.dumps(list(values))
        for quantity, data in values.items():
            _dataset(stored, quantity, data=np.asarray(data, np.float64))
        for key, value in attrs.items():
            group.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
        self.parent.file.flush()
