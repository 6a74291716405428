"""Hooks on the driver's sweep: a base class of no-op methods, a list that dispatches to many, a
progress bar and a tile log (the live preview draws, so it lives with the figures:
:class:`landscape_dist.figures.live.LivePreview`)."""

from __future__ import annotations

import sys
import time



class SweepCallback:
    """Override any of these; all run on the driver, in the order events happen."""

    def on_slice_begin(self, name: str, n_points: int | None) -> None:
        pass

    def on_tile_end(self, name: str, tile, result: dict) -> None:
        pass

    def on_tile_resumed(self, name: str, tile, result: dict) -> None:
        """A tile read back from the journal of an interrupted run (not computed again)."""

    def on_slice_end(self, name: str, summary: dict) -> None:
        pass


class CallbackList(SweepCallback):
    """Dispatches every event to each callback in turn."""

    def __init__(self, callbacks=()):
        self.callbacks = [cb for cb in callbacks if cb is not None]

    def append(self, callback: SweepCallback) -> None:
        self.callbacks.append(callback)

    def on_slice_begin(self, name, n_points):
        for cb in self.callbacks:
            cb.on_slice_begin(name, n_points)

    def on_tile_end(self, name, tile, result):
        for cb in self.callbacks:
            cb.on_tile_end(name, tile, result)

    def on_tile_resumed(self, name, tile, result):
        for cb in self.callbacks:
            cb.on_tile_resumed(name, tile, result)

    def on_slice_end(self, name, summary):
        for cb in self.callbacks:
            cb.on_slice_end(name, summary)


class ProgressBar(SweepCallback):
    """A tqdm bar per slice counting grid points, with points/s and ETA; redrawn at most
    ``per_second`` times a second (a driver taking thousands of tiles a second would otherwise
    spend its time drawing), and once more when the slice ends."""

    def __init__(self, file=None, per_second: float = 10.0, clock=time.monotonic):
        if isinstance(per_second, bool) or not isinstance(per_second, (int, float)) \
                or not 0 < per_second < float("inf"):
            raise ValueError(f"The 'per_second' parameter of ProgressBar must be a finite number "
                             f"> 0 (redraws a second). Got {per_second!r} instead.")
        self.file = file or sys.stderr
        self.every_s, self.clock = 1.0 / per_second, clock
        self._bar = None
        self._pending, self._last = 0, 0.0

    def on_slice_begin(self, name, n_points):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=n_points, desc=f"slice {name}", unit="pt", file=self.file,
                         dynamic_ncols=True, smoothing=0.1)
        self._pending, self._last = 0, self.clock()

    def on_tile_end(self, name, tile, result):
        self._pending += tile.size
        now = self.clock()
        if now - self._last >= self.every_s:
            self._update(now)

    def _update(self, now: float) -> None:
        self._bar.update(self._pending)
        self._pending, self._last = 0, now

    def on_slice_end(self, name, summary):
        if self._bar is not None:
            self._update(self.clock())
            self._bar.close()
            self._bar = None


class TileLog(SweepCallback):
    """Remembers which tiles were computed, with their timing (tests and summaries)."""

    def __init__(self):
        self.tiles: list = []
        self._t0 = time.perf_counter()

    def on_tile_end(self, name, tile, result):
        self.tiles.append((name, tile.index, time.perf_counter() - self._t0))
