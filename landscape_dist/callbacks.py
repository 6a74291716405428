"""Hooks on the driver's sweep: a base class of no-op methods, and a progress bar."""

from __future__ import annotations

import sys
import time


class SweepCallback:
    """Override any of these; all run on the driver, in the order events happen."""

    def on_slice_begin(self, name: str, n_points: int) -> None:
        pass

    def on_tile_end(self, name: str, tile, result: dict) -> None:
        pass

    def on_slice_end(self, name: str, summary: dict) -> None:
        pass


class ProgressBar(SweepCallback):
    """A tqdm bar per slice counting grid points, with points/s and ETA."""

    def __init__(self, file=None):
        self.file = file or sys.stderr
        self._bar = None

    def on_slice_begin(self, name, n_points):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=n_points, desc=f"slice {name}", unit="pt", file=self.file,
                         dynamic_ncols=True, smoothing=0.1)

    def on_tile_end(self, name, tile, result):
        self._bar.update(tile.size)

    def on_slice_end(self, name, summary):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class TileLog(SweepCallback):
    """Remembers which tiles were computed, with their timing (tests and summaries)."""

    def __init__(self):
        self.tiles: list = []
        self._t0 = time.perf_counter()

    def on_tile_end(self, name, tile, result):
        self.tiles.append((name, tile.index, time.perf_counter() - self._t0))
