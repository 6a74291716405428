"""The live preview: a sweep callback that redraws the loss of the points done so far."""

from __future__ import annotations

import time

import numpy as np

from ..callbacks import SweepCallback


class LivePreview(SweepCallback):
    """Redraws ``<out>/<slice>_preview.png`` at most every ``every_s`` seconds while a slice is
    swept, and once when it ends: the loss of the points done so far, the gaps filled from their
    neighbours, so a coarse-to-fine sweep gives a usable picture early."""

    def __init__(self, out, grids: dict, every_s: float, quantity: str = "loss"):
        self.out = out
        self.grids = grids  # slice name -> (xs, ys or None)
        self.every_s = every_s
        self.quantity = quantity
        self._values = None
        self._last = 0.0

    def on_slice_begin(self, name, n_points):
        xs, ys = self.grids[name]
        self._values = np.full((1 if ys is None else len(ys), len(xs)), np.nan)
        self._last = time.monotonic()

    def _store(self, tile, result):
        if self.quantity in result:  # two fidelities: a tile of the subset alone is not drawn
            tile.place(self._values, result[self.quantity])

    def on_tile_resumed(self, name, tile, result):
        self._store(tile, result)

    def on_tile_end(self, name, tile, result):
        self._store(tile, result)
        if time.monotonic() - self._last >= self.every_s:
            self.draw(name)

    def on_slice_end(self, name, summary):
        self.draw(name)
        self._values = None

    def draw(self, name):
        from .preview import plot_preview  # matplotlib: only once it draws

        xs, ys = self.grids[name]
        plot_preview(self._values, xs, ys, f"{self.out}/{name}_preview.png", f"slice '{name}'",
                     self.quantity)
        self._last = time.monotonic()
