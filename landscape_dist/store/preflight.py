"""Checks made before a sweep starts: what its grids need against the machine's disk and memory,
and what a diverged training run left in the centre and the recorded path."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from ..config.schema import Config
from ..core.grid import coarsest_stride
from ..errors import OutputError
from ..model.trajectory import Trajectory
from .blocks import LIMIT_BYTES
from .outdir import nearest_existing
from .surface import CHUNK_POINTS

log = logging.getLogger("landscape_dist")


_FILE_BYTES_PER_POINT = 9  # at least: the loss (float64) and the done mask (bool)
_DRIVER_BYTES_PER_TILE = 512  # the driver's bookkeeping of a tile: Tile, queue and index entries


def _available_memory() -> int:
    """Bytes of memory available to new allocations (Linux: MemAvailable), else physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.3g} GiB"


def _lattice_count(rows: range, cols: range, th: int, tw: int) -> int:
    return -(-len(rows) // th) * -(-len(cols) // tw)


def tile_count(shape: tuple[int, int], tile: tuple[int, int], order: str) -> int:
    """How many tiles :func:`~landscape_dist.core.grid.split_tiles` cuts the grid into, counted
    without making them (the same lattices, each cut into tiles of at most ``tile``)."""
    rows, cols = shape
    th, tw = tile
    if order != "coarse_to_fine":
        return _lattice_count(range(rows), range(cols), th, tw)
    stride = coarsest_stride(shape)
    count = _lattice_count(range(0, rows, stride), range(0, cols, stride), th, tw)
    while stride > 1:
        half = stride // 2
        count += _lattice_count(range(half, rows, stride), range(0, cols, half), th, tw)
        count += _lattice_count(range(0, rows, stride), range(half, cols, stride), th, tw)
        stride = half
    return count


def buffer_bytes(shape: tuple[int, int], tile: tuple[int, int], order: str, flat: bool = False,
                 bytes_per_point: int = _FILE_BYTES_PER_POINT) -> int:
    """At least the bytes the write-behind buffer (:mod:`~landscape_dist.store.blocks`) may hold
    for a grid of ``shape`` (rows, columns; ``flat``: a 1-D slice) swept in tiles of ``tile``
    in ``order``: its limit plus the chunk-sized blocks one more tile opens before they are
    written out (a tile of a coarse pass, every s-th point, touches up to a block a point),
    never more than the whole grid."""
    rows, cols = shape
    stride = coarsest_stride(shape) if order == "coarse_to_fine" else 1
    if flat:
        block = (1, min(cols, CHUNK_POINTS[0] * CHUNK_POINTS[1]))
    else:
        block = (min(rows, CHUNK_POINTS[0]), min(cols, CHUNK_POINTS[1]))
    touched = 1
    for n, t, b in zip(shape, tile, block):  # blocks one tile meets along each axis
        touched *= min(t, -(-n // b), (min(t, n) - 1) * stride // b + 2)
    return min(rows * cols, LIMIT_BYTES // bytes_per_point + touched * block[0] * block[1]) \
        * bytes_per_point


def check_sizes(config: Config, out: Path | None) -> None:
    """Refuse grids whose surface file cannot fit on the output's disk (``out``; None: a dry run,
    which writes nothing and checks no disk), or whose tiles' bookkeeping, and the finished tiles
    the write-behind buffer holds (:func:`buffer_bytes`), cannot fit in the driver's memory,
    before anything is allocated."""
    existing = None if out is None else nearest_existing(out)
    free = None if existing is None else shutil.disk_usage(existing).free
    available = _available_memory()
    file_bytes = 0
    for i, slice_cfg in enumerate(config.slices):
        rows, cols = slice_cfg.grid.shape
        th, tw = slice_cfg.grid.tile
        points = rows * cols
        file_bytes += points * _FILE_BYTES_PER_POINT
        tiles = tile_count(slice_cfg.grid.shape, slice_cfg.grid.tile, slice_cfg.grid.order)
        size = f"{cols} x {rows}" if slice_cfg.grid.y is not None else f"{cols}"
        if tiles * _DRIVER_BYTES_PER_TILE > available // 2:
            raise OutputError(f"The grid of slice '{slice_cfg.name}' ({size} points in tiles of "
                              f"{th} x {tw}) makes {tiles:.3g} tiles, whose bookkeeping needs at "
                              f"least {_gib(tiles * _DRIVER_BYTES_PER_TILE)} of the driver's memory, "
                              f"more than half the {_gib(available)} available. Use larger tiles "
                              f"(grid.tile) or fewer points (grid.x.points, grid.y.points).")
        if free is not None and file_bytes > free:
            raise OutputError(f"The grid of slice '{slice_cfg.name}' ({size} points) needs a surface "
                              f"file of at least {_gib(file_bytes)} ({_FILE_BYTES_PER_POINT} bytes a "
                              f"point, all slices so far), but {_gib(free)} are free under "
                              f"'{existing}'. Use fewer points (grid.x.points, grid.y.points) or "
                              f"another {{out}}.", out="output directory")
        held = tiles * _DRIVER_BYTES_PER_TILE + buffer_bytes(
            slice_cfg.grid.shape, (th, tw), slice_cfg.grid.order, slice_cfg.grid.y is None)
        if held > available // 2:  # the tiles' bookkeeping fits; with the finished tiles held?
            raise OutputError(f"The grid of slice '{slice_cfg.name}' ({size} points in tiles of "
                              f"{th} x {tw}) needs at least {_gib(held)} of the driver's memory "
                              f"(its {tiles:.3g} tiles' bookkeeping and up to "
                              f"{_gib(held - tiles * _DRIVER_BYTES_PER_TILE)} of finished tiles "
                              f"held before they are written), more than half the "
                              f"{_gib(available)} available. Use smaller tiles (grid.tile), fewer "
                              f"points (grid.x.points, grid.y.points), or a machine with more "
                              f"free memory.")


def _steps(rows: np.ndarray, traj: Trajectory, limit: int = 5) -> str:
    steps = [str(int(traj.step[i])) for i in np.flatnonzero(rows)[:limit]]
    return ", ".join(steps) + (", ..." if rows.sum() > limit else "")


def warn_diverged(centre: np.ndarray, traj: Trajectory | None) -> None:
    """Say so when the centre or recorded checkpoints are not finite (a diverged training run):
    the sweep still runs and stores what it computes, NaN included."""
    if traj is not None:
        bad = ~np.isfinite(traj.weights).all(axis=1)
        if bad.any():
            good = np.flatnonzero(~bad)
            last = (f"the last finite one is step {int(traj.step[good[-1]])} (epoch "
                    f"{int(traj.epoch[good[-1]])})" if good.size else "none is finite")
            log.warning("the training path has %d of %d checkpoints that are not finite (steps %s); "
                        "%s", int(bad.sum()), len(bad), _steps(bad, traj), last)
    bad_centre = int(np.sum(~np.isfinite(centre)))
    if bad_centre:
        log.warning("the centre weights hold %d NaN or infinite values (a diverged training run?): "
                    "every point of a slice through them will be NaN", bad_centre)
