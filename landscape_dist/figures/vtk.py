"""ParaView meshes: a VTK XML PolyData file (``.vtp``) per 2-D slice and quantity.

The surface is a mesh of quads over the grid, the height of each point its value (clipped to
``plot.zmin``/``zmax``, on a log10 scale with ``plot.log_z``), cells with a diverged or clipped-out
corner left out; the values themselves (unclipped, NaN where diverged), their log10, the done mask
and which part a point belongs to are point arrays. The recorded path, where the slice has one, is
a polyline at its true values in the same file, with its step and epoch.

Written by our own writer: the format is a documented XML schema of a few elements, and the one
library that writes it (VTK, or pyvista over it) is several hundred megabytes for users who only
want the file; the tests read it back with VTK's own reader.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from .common import file_stem, heights, quantities


def _array(name: str, values: np.ndarray, components: int = 1) -> str:
    """One inline binary DataArray (base64 of a UInt64 byte count then little-endian data)."""
    values = np.ascontiguousarray(values)
    kind = {"f": "Float64", "i": "Int64", "u": "UInt8"}[values.dtype.kind]
    data = values.astype({"Float64": "<f8", "Int64": "<i8", "UInt8": "u1"}[kind]).tobytes()
    payload = base64.b64encode(struct.pack("<Q", len(data)) + data).decode("ascii")
    named = f' Name={quoteattr(name)}' if name else ""
    return (f'<DataArray type="{kind}"{named} NumberOfComponents="{components}" '
            f'format="binary">{payload}</DataArray>')


def _cells(connectivity: np.ndarray, sizes: np.ndarray) -> str:
    offsets = np.cumsum(sizes).astype(np.int64)
    return _array("connectivity", connectivity.astype(np.int64)) + _array("offsets", offsets)


def surface_mesh(surface, quantity: str, cfg):
    """(points (N, 3), quads (Q, 4) of point indices, point arrays by name, path polyline
    indices or None) of one slice and quantity; grid point (row j, column i) is point j*nx + i."""
    xs, ys = surface.xcoordinates, surface.ycoordinates
    raw = np.asarray(surface.shown[quantity], dtype=np.float64)
    z, _ = heights(raw, cfg)
    ny, nx = raw.shape
    X, Y = np.meshgrid(xs, ys)
    ok = np.isfinite(z)
    points = np.column_stack([X.ravel(), Y.ravel(), np.where(ok, z, 0.0).ravel()])
    index = np.arange(ny * nx).reshape(ny, nx)
    quads = np.stack([index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]], axis=-1)
    good = ok[:-1, :-1] & ok[:-1, 1:] & ok[1:, 1:] & ok[1:, :-1]
    quads = quads[good]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(raw > 0, np.log10(raw), np.nan)
    arrays = {quantity: raw.ravel(), f"log10_{quantity}": logs.ravel(),
              "done": surface.done.ravel().astype(np.uint8), "part": np.zeros(ny * nx, np.uint8),
              "step": np.full(ny * nx, -1, np.int64), "epoch": np.full(ny * nx, np.nan)}
    path = surface.path
    line = None
    if path is not None and quantity in path.values and path.coords.shape[1] == 2:
        keep = np.all(np.isfinite(path.coords), axis=1)
        true = np.asarray(path.values[quantity], dtype=np.float64)[keep]
        pz, _ = heights(true, cfg)
        start = len(points)
        points = np.vstack([points, np.column_stack([path.coords[keep], np.nan_to_num(pz)])])
        with np.errstate(divide="ignore", invalid="ignore"):
            path_logs = np.where(true > 0, np.log10(true), np.nan)
        extra = {quantity: true, f"log10_{quantity}": path_logs,
                 "done": np.ones(len(true), np.uint8), "part": np.ones(len(true), np.uint8),
                 "step": np.asarray(path.step)[keep].astype(np.int64),
                 "epoch": np.asarray(path.epoch, dtype=np.float64)[keep]}
        arrays = {k: np.concatenate([v, extra[k]]) for k, v in arrays.items()}
        line = np.arange(start, len(points))
    return points, quads, arrays, line


def write_vtp(surface, quantity: str, file: Path, cfg) -> Path:
    """One slice and quantity as a VTK XML PolyData file (see the module docstring)."""
    points, quads, arrays, line = surface_mesh(surface, quantity, cfg)
    lines = "" if line is None or len(line) < 2 else (
        "<Lines>" + _cells(line, np.array([len(line)])) + "</Lines>")
    n_lines = 0 if not lines else 1
    data = "".join(_array(name, values) for name, values in arrays.items())
    text = (
        '<?xml version="1.0"?>\n'
        '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" header_type="UInt64">\n'
        '<PolyData>\n'
        f'<Piece NumberOfPoints="{len(points)}" NumberOfVerts="0" NumberOfLines="{n_lines}" '
        f'NumberOfStrips="0" NumberOfPolys="{len(quads)}">\n'
        f'<PointData Scalars={quoteattr(quantity)}>{data}</PointData>\n'
        f'<Points>{_array("", points, 3)}</Points>\n'
        f'{lines}\n'
        f'<Polys>{_cells(quads.ravel(), np.full(len(quads), 4))}</Polys>\n'
        '</Piece>\n</PolyData>\n</VTKFile>\n')
    Path(file).write_text(text)
    return Path(file)


def write_surface_vtp(surface_file: Path, out: Path, cfg) -> list[str]:
    """A ``.vtp`` per 2-D slice and quantity of a surface file; returns the written paths."""
    from ..store.surface import read_surface

    written = []
    for name, surface in read_surface(surface_file).items():
        if surface.ndim != 2:
            continue
        for quantity in quantities(surface):
            stem = file_stem(name, quantity, surface.loss_name)
            written.append(str(write_vtp(surface, quantity, out / f"{stem}.vtp", cfg)))
    return written
