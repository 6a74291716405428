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
    """A rectangle of grid indices: rows [r0, r1) along y and columns [c0, c1) along x."""

    index: int
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.r1 - self.r0, self.c1 - self.c0)

    @property
    def size(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)

    def points(self, xs: np.ndarray, ys: np.ndarray | None) -> np.ndarray:
        """Plane coordinates of the tile's points in row-major order, shape (size, 1 or 2)."""
        x = xs[self.c0:self.c1]
        if ys is None:
            return x[:, None].astype(np.float32)
        yy, xx = np.meshgrid(ys[self.r0:self.r1], x, indexing="ij")
        return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


def split_tiles(shape: tuple[int, int], tile_shape: tuple[int, int]) -> list[Tile]:
    """Cover a (rows, columns) grid with tiles of at most ``tile_shape``; each point in exactly one."""
    rows, cols = shape
    th, tw = tile_shape
    tiles = []
    for r0 in range(0, rows, th):
        for c0 in range(0, cols, tw):
            tiles.append(Tile(len(tiles), r0, min(r0 + th, rows), c0, min(c0 + tw, cols)))
    return tiles


def assemble(shape: tuple[int, int], tiles: list[Tile], values: list[np.ndarray],
             fill: float = np.nan) -> np.ndarray:
    """Place each tile's values (flat, row-major) into a (rows, columns) array."""
    out = np.full(shape, fill, dtype=np.float64)
    for tile, vals in zip(tiles, values):
        out[tile.r0:tile.r1, tile.c0:tile.c1] = np.asarray(vals).reshape(tile.shape)
    return out
