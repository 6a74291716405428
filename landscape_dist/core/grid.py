"""Grid coordinates and their split into tiles, the unit of scheduling and checkpointing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def axis_coordinates(lo: float, hi: float, points: int, spacing: str = "linear") -> np.ndarray:
    """Coordinates of one axis, shape (points,). ``cubic`` puts more points near the middle."""
    unit = np.linspace(-1.0, 1.0, points)
    if spacing == "cubic":
        unit = unit ** 3
    elif spacing != "linear":
        raise ValueError(f"The 'spacing' parameter must be 'linear' or 'cubic'. Got {spacing!r} instead.")
    mid, half = (hi + lo) / 2.0, (hi - lo) / 2.0
    coords = mid + half * unit
    coords[0], coords[-1] = lo, hi
    return coords


@dataclass(frozen=True)
class Tile:
    """A lattice of grid indices: rows ``r0, r0+rs, ... < r1`` along y and columns
    ``c0, c0+cs, ... < c1`` along x (strides 1: a plain rectangle)."""

    index: int
    r0: int
    r1: int
    c0: int
    c1: int
    rs: int = 1
    cs: int = 1

    @property
    def rows(self) -> slice:
        return slice(self.r0, self.r1, self.rs)

    @property
    def cols(self) -> slice:
        return slice(self.c0, self.c1, self.cs)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(range(self.r0, self.r1, self.rs)), len(range(self.c0, self.c1, self.cs)))

    @property
    def size(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def points(self, xs: np.ndarray, ys: np.ndarray | None) -> np.ndarray:
        """Plane coordinates of the tile's points in row-major order, shape (size, 1 or 2)."""
        x = xs[self.cols].astype(np.float32)
        if ys is None:
            return x[:, None]
        y = ys[self.rows].astype(np.float32)
        out = np.empty((len(y), len(x), 2), np.float32)  # filled in place: the driver makes
        out[..., 0] = x                                   # thousands of these a second
        out[..., 1] = y[:, None]
        return out.reshape(-1, 2)


    def place(self, array: np.ndarray, values) -> None:
        """Put the tile's values (flat, row-major) into a (rows, columns) array."""
        array[self.rows, self.cols] = np.asarray(values).reshape(self.shape)


@dataclass(frozen=True, eq=False)
class PointTile:
    """Grid points listed one by one (row indices ``r``, column indices ``c``, row-major): the
    tiles of adaptive refinement, whose points need not form a lattice."""

    index: int
    r: np.ndarray
    c: np.ndarray

    @property
    def size(self) -> int:
        return len(self.r)

    def points(self, xs: np.ndarray, ys: np.ndarray | None) -> np.ndarray:
        """Plane coordinates of the tile's points, shape (size, 2)."""
        return np.stack([xs[self.c], ys[self.r]], axis=1).astype(np.float32)

    def place(self, array: np.ndarray, values) -> None:
        """Put the tile's values into a (rows, columns) array."""
        array[self.r, self.c] = np.asarray(values).ravel()

    def row_runs(self):
        """(row, positions in the tile, columns) per row the tile touches: for stores that take
        one list of columns per selection (HDF5)."""
        starts = np.flatnonzero(np.r_[True, self.r[1:] != self.r[:-1]])
        ends = np.r_[starts[1:], len(self.r)]
        for a, b in zip(starts, ends):
            yield int(self.r[a]), slice(a, b), self.c[a:b]


def point_tiles(rows: np.ndarray, cols: np.ndarray, size: int, first_index: int) -> list[PointTile]:
    """Row-major points cut into tiles of at most ``size`` points, numbered from ``first_index``."""
    return [PointTile(first_index + k, rows[i:i + size], cols[i:i + size])
            for k, i in enumerate(range(0, len(rows), size))]


def _lattice_tiles(tiles: list, rows: range, cols: range, tile_shape) -> None:
    """Append tiles of at most ``tile_shape`` points covering the lattice ``rows x cols``."""
    th, tw = tile_shape
    for i in range(0, len(rows), th):
        r = rows[i:i + th]
        for j in range(0, len(cols), tw):
            c = cols[j:j + tw]
            tiles.append(Tile(len(tiles), r.start, r[-1] + 1, c.start, c[-1] + 1, rows.step, cols.step))


def coarsest_stride(shape: tuple[int, int], min_points: int = 8) -> int:
    """The largest power of two whose sub-sampled grid still has ``min_points`` points along
    the longer axis (1 for small grids)."""
    longest = max(shape) - 1
    stride = 1
    while longest // (2 * stride) >= min_points:
        stride *= 2
    return stride


def split_tiles(shape: tuple[int, int], tile_shape: tuple[int, int],
                order: str = "rows") -> list[Tile]:
    """Cover a (rows, columns) grid with tiles of at most ``tile_shape`` points; each point in
    exactly one tile, tiles numbered in the order they should be computed.

    ``rows``: rectangles, row by row. ``coarse_to_fine``: first the grid sub-sampled with the
    coarsest stride s, then the points that halve the stride (s/2, ...) down to 1, so the
    tiles done at any moment cover the plane evenly.
    """
    rows, cols = shape
    tiles: list[Tile] = []
    if order == "rows":
        _lattice_tiles(tiles, range(rows), range(cols), tile_shape)
        return tiles
    if order != "coarse_to_fine":
        raise ValueError(f"The 'order' parameter must be 'rows' or 'coarse_to_fine'. Got {order!r} instead.")
    stride = coarsest_stride(shape)
    _lattice_tiles(tiles, range(0, rows, stride), range(0, cols, stride), tile_shape)
    while stride > 1:
        half = stride // 2
        # new points: odd multiples of `half` in rows (any column multiple of half), and
        # even multiples of `half` in rows with odd multiples of `half` in columns
        _lattice_tiles(tiles, range(half, rows, stride), range(0, cols, half), tile_shape)
        _lattice_tiles(tiles, range(0, rows, stride), range(half, cols, stride), tile_shape)
        stride = half
    return tiles
