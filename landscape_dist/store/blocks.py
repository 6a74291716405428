"""A write-behind buffer: finished tiles held in memory and written into HDF5 datasets in whole
chunks, instead of one small write per tile and dataset.

The datasets of a slice share one shape and one chunk shape; a *block* is the part of every
dataset one chunk covers. A tile's values go into the blocks it touches (a tile of a coarse
pass, every ``s``-th point, touches many). A block is written, each dataset in one call, as soon
as every point of it is in, and then dropped; the blocks still open are written, and kept, on
:meth:`BlockBuffer.flush` (at most every ``every_s`` seconds, before anything reads the file,
at the end, on interruption), and written and dropped when they hold more than ``limit_bytes``
(a block dropped before it was complete is read back from the file when a later tile reaches
it). The memory held is bounded by the blocks open at once, never by the number of tiles.

The buffer speeds up the surface file only: what a resumed sweep trusts is the journal, whose
record of a tile is durable before the tile is handed here.
"""

from __future__ import annotations

import time

import numpy as np

from ..core.grid import PointTile

LIMIT_BYTES = 256 * 2 ** 20  # blocks held before they are written out unfinished
EVERY_S = 10.0  # the longest a finished tile waits in memory while others keep arriving


class _Block:
    """One chunk's worth of every dataset, in memory: ``arrays`` by dataset name, the mask too."""

    __slots__ = ("arrays", "filled", "dirty")

    def __init__(self, arrays: dict, filled: int):
        self.arrays, self.filled, self.dirty = arrays, filled, False


class BlockBuffer:
    """Tiles' values for ``datasets`` (name -> h5py dataset, one shape and chunk shape; 1-D or
    2-D), held by chunk-aligned block and written a block at a time. ``mask``: the name of the
    bool dataset the buffer sets True at every point a tile brings (the done mask); it tells
    when a block is complete. ``clock``: seconds (tests pass their own)."""

    def __init__(self, datasets: dict, mask: str, limit_bytes: int = LIMIT_BYTES,
                 every_s: float = EVERY_S, clock=time.monotonic):
        self.datasets, self.mask = dict(datasets), mask
        shape = datasets[mask].shape
        self.flat = len(shape) == 1  # a 1-D slice: one row of blocks
        self.shape = (1, shape[0]) if self.flat else tuple(shape)
        chunks = datasets[mask].chunks or shape
        self.block = (1, chunks[0]) if self.flat else tuple(chunks)
        self.limit_bytes, self.every_s, self.clock = limit_bytes, every_s, clock
        self._open: dict = {}  # (block row, block column) -> _Block
        self._written: set = set()  # blocks written out unfinished: read back when reached
        self._bytes_per_point = sum(d.dtype.itemsize for d in self.datasets.values())
        self._held = 0  # bytes held by open blocks
        self._last = clock()
        self.writes = 0  # dataset writes made (each a block of one dataset)

    # ------------------------------------------------------------------ geometry

    def _extent(self, key) -> tuple[slice, slice]:
        """The grid rows and columns block ``key`` covers."""
        (bh, bw), (br, bc) = self.block, key
        return (slice(br * bh, min((br + 1) * bh, self.shape[0])),
                slice(bc * bw, min((bc + 1) * bw, self.shape[1])))

    def _pieces(self, tile):
        """(block key, index in the block, index in the tile's values) for every block the tile
        touches; the tile's values are (rows, columns) for a lattice tile, flat for listed
        points (``tile.r``, ``tile.c``)."""
        if not isinstance(tile, PointTile):
            rows = _runs(tile.r0, tile.r1, tile.rs, self.block[0])
            cols = _runs(tile.c0, tile.c1, tile.cs, self.block[1])
            return [((br, bc), (r_in, c_in), (r_of, c_of))
                    for br, r_in, r_of in rows for bc, c_in, c_of in cols]
        r, c = np.asarray(tile.r), np.asarray(tile.c)
        keys = (r // self.block[0]) * (self.shape[1] // self.block[1] + 1) + c // self.block[1]
        out = []
        for key in np.unique(keys):
            at = np.flatnonzero(keys == key)
            br, bc = int(r[at[0]] // self.block[0]), int(c[at[0]] // self.block[1])
            out.append(((br, bc), (r[at] - br * self.block[0], c[at] - bc * self.block[1]), at))
        return out

    # ------------------------------------------------------------------ adding

    def add(self, tile, values: dict) -> None:
        """Hold a tile's ``values`` (dataset name -> flat, row-major array; every dataset but
        the mask) and mark its points in the mask; blocks it completes are written."""
        shape = -1 if isinstance(tile, PointTile) else tile.shape
        shaped = {name: np.asarray(v).reshape(shape)
                  for name, v in values.items()}
        for key, inside, of in self._pieces(tile):
            block = self._open.get(key) or self._start(key)
            seen = block.arrays[self.mask][inside]
            for name, v in shaped.items():
                block.arrays[name][inside] = v[of]
            block.arrays[self.mask][inside] = True
            block.filled += seen.size - int(np.count_nonzero(seen))
            block.dirty = True
            if block.filled == block.arrays[self.mask].size:
                self._write(key, block)
                self._drop(key)
        if self._held > self.limit_bytes:
            self.flush(drop=True)
        elif self.clock() - self._last >= self.every_s:
            self.flush()

    def _start(self, key) -> _Block:
        """Open block ``key``: as the file holds it if written before, else the fill values."""
        rows, cols = self._extent(key)
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        if key in self._written:
            arrays = {name: self._read(d, rows, cols) for name, d in self.datasets.items()}
        else:
            arrays = {name: np.full(shape, d.fillvalue, d.dtype) for name, d in self.datasets.items()}
        block = self._open[key] = _Block(arrays, int(np.count_nonzero(arrays[self.mask])))
        self._held += shape[0] * shape[1] * self._bytes_per_point
        return block

    def _drop(self, key) -> None:
        block = self._open.pop(key)
        self._held -= block.arrays[self.mask].size * self._bytes_per_point

    # ------------------------------------------------------------------ writing

    def _read(self, dataset, rows: slice, cols: slice) -> np.ndarray:
        return dataset[cols][None, :] if self.flat else dataset[rows, cols]

    def _write(self, key, block: _Block) -> None:
        rows, cols = self._extent(key)
        for name, dataset in self.datasets.items():
            if self.flat:
                dataset[cols] = block.arrays[name][0]
            else:
                dataset[rows, cols] = block.arrays[name]
            self.writes += 1
        block.dirty = False

    def flush(self, drop: bool = False) -> None:
        """Write every block holding values not yet in the file; ``drop``: and let go of the
        open blocks (a later tile reaching one reads it back)."""
        for key, block in list(self._open.items()):
            if block.dirty:
                self._write(key, block)
            if drop:
                self._written.add(key)
                self._drop(key)
        self._last = self.clock()

    @property
    def held_bytes(self) -> int:
        """Bytes of the blocks open now."""
        return self._held


def _runs(start: int, stop: int, step: int, size: int) -> list:
    """The lattice ``range(start, stop, step)`` cut at multiples of ``size``: (block number,
    slice inside the block, slice of the lattice's positions) per block it meets."""
    out = []
    n = len(range(start, stop, step))
    first = start // size
    last = (start + (n - 1) * step) // size
    for b in range(first, last + 1):
        lo = max(0, -(-(b * size - start) // step))
        hi = min(n, -(-((b + 1) * size - start) // step))
        if lo < hi:
            at = start + lo * step - b * size
            out.append((b, slice(at, at + (hi - lo - 1) * step + 1, step), slice(lo, hi)))
    return out
