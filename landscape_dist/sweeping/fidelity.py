"""One slice swept with two fidelities (``grid.fidelity``), for a
:class:`~landscape_dist.sweeping.slices.SliceSweep`.

The steps, each one's points following from the values journalled before it (so a resumed sweep,
recomputing them, meets the same tiles, numbered on from the previous step's):

1. the coarse lattice (``coarse`` points per side) on every example and on the subset;
2. the refinement's steps (``grid.refine``'s settings) on the subset only, its tests applied to
   the subset's values corrected by the discrepancy fitted in step 1, so that cells are split
   where the *full data's* contour lines cross them;
3. with ``extra``: that many points on every example where the corrected picture's contour
   lines are least certain (the discrepancy's standard deviation over the surface's slope).

Then the discrepancy is fitted again on every full-data point and the estimated picture goes to
``filled/<quantity>`` (with ``filled/std/<quantity>``), labelled as estimated; the full data's
values stay in ``values/`` (``done``) and the subset's in ``cheap/values/`` (``cheap/done``).
"""

from __future__ import annotations

import logging

import numpy as np

from ..config.schema import RefineConfig
from ..core.fidelity import (CHEAP, Discrepancy, coarse_stride, lattice_mask, most_uncertain,
                             unit_coords)
from ..core.grid import point_tiles
from ..core.refine import Refiner, fill

log = logging.getLogger("landscape_dist")

ESTIMATED = ("estimated: two fidelities, the subset's picture (hierarchical bilinear interpolation "
             "of its evaluated points) corrected by a Gaussian-process discrepancy fitted on the "
             "full-data points (values/ holds only values evaluated on every example, cheap/values/ "
             "those evaluated on the subset)")


class _SplitWriter:
    """Stands in for the slice's writer while the tiles come in: each tile's subset values
    (``cheap/<name>``) go to the ``cheap`` group, the others to the slice's writer; both
    fidelities' values and done-masks are kept in memory for the steps' choices."""

    def __init__(self, main, cheap, shape):
        self.main, self.cheap = main, cheap
        self.values = {"full": {}, "cheap": {}}
        self.done = {"full": np.zeros(shape, bool), "cheap": np.zeros(shape, bool)}
        self.shape = shape

    def write_tiles(self, tiles: list) -> None:
        for tile, result in tiles:
            self.write_tile(tile, result)

    def write_tile(self, tile, result: dict) -> None:
        prefix = f"{CHEAP}/"
        full = {k: v for k, v in result.items() if not k.startswith(prefix)}
        cheap = {k[len(prefix):]: v for k, v in result.items() if k.startswith(prefix)}
        for which, part, writer in (("full", full, self.main), ("cheap", cheap, self.cheap)):
            if not part:
                continue
            writer.write_tile(tile, part)
            for name, flat in part.items():
                grid = self.values[which].setdefault(name, np.full(self.shape, np.nan))
                tile.place(grid, np.asarray(flat, np.float64))
            tile.place(self.done[which], np.ones(tile.size, bool))


class TwoFidelities:
    """Sweeps ``sweep``'s slice with two fidelities (see the module's description)."""

    def __init__(self, sweep):
        self.sweep = sweep
        plan = sweep.plan
        self.grid = plan.config.grid
        self.settings = self.grid.fidelity
        refine = self.grid.refine or RefineConfig()
        plot = sweep.plot
        self.refiner = Refiner(self.grid.shape, refine.tol, refine.levels or plot.levels,
                               plot.log_levels if refine.log_levels is None else refine.log_levels,
                               refine.shift)
        self.names = tuple(plan.config.quantities)
        self.loss = "loss"
        rows, cols = np.indices(self.grid.shape)
        self.coords = unit_coords(rows.ravel(), cols.ravel(), self.grid.shape)

    def run(self, pool, resumed: dict) -> tuple[tuple[int, int, int], dict]:
        """Sweep the slice; returns (tiles, tiles resumed, points computed) and the metadata
        stored with the estimated picture."""
        sweep, shape = self.sweep, self.grid.shape
        both = self.names + tuple(f"{CHEAP}/{q}" for q in self.names)
        pool.select_quantities(both)
        full_names = [n for n in pool.names if not n.startswith(f"{CHEAP}/")]
        cheap_names = [n[len(CHEAP) + 1:] for n in pool.names if n.startswith(f"{CHEAP}/")]
        subset = next((e for e in pool.quantities.stderrs if e.name.startswith(f"{CHEAP}/")), None)
        attrs = {"kind": "evaluated on a fixed, seeded subset of the examples",
                 "examples": self.settings.examples, "of": subset.total if subset else None,
                 "examples_seed": self.settings.examples_seed}
        main = sweep.slice_writer
        self.writer = _SplitWriter(main, main.add_group(CHEAP, cheap_names, attrs), shape)
        sweep.slice_writer = self.writer
        self.first, self.totals, self.steps = 0, np.zeros(3, int), []
        sweep.callbacks.on_slice_begin(sweep.plan.name, None)  # how many points is not known ahead
        try:
            stride = coarse_stride(shape, self.settings.coarse)
            self._step(pool, resumed, "coarse", stride, np.nonzero(lattice_mask(shape, stride)))
            model = self._fit()
            pool.select_quantities(tuple(f"{CHEAP}/{q}" for q in self.names))
            for step in self.refiner.steps():
                corrected = self._corrected(model)
                self._step(pool, resumed, step[0], step[1],
                           self.refiner.points(step, corrected, self.writer.done["cheap"]))
            if self.settings.extra:
                pool.select_quantities(self.names)  # the subset is known there already
                self._step(pool, resumed, "extra", 1, self._extra(self._fit()))
        finally:
            sweep.slice_writer = main
            pool.select_quantities(self.names)
        meta = self._store(full_names, attrs, stride)
        return tuple(int(t) for t in self.totals), meta

    def _step(self, pool, resumed, kind: str, stride: int, points) -> None:
        rows, cols = points
        done = self.writer.done["cheap" if kind != "extra" else "full"]
        keep = ~done[rows, cols]
        rows, cols = rows[keep], cols[keep]
        size = self.grid.tile[0] * self.grid.tile[1]
        tiles = point_tiles(rows, cols, size, self.first)
        self.first += len(tiles)
        self.totals += self.sweep.run_tiles(pool, tiles, resumed, announce=False)
        self.steps.append({"step": kind, "stride": int(stride), "points": int(len(rows))})

    def _fit(self, quantity: str = "loss") -> Discrepancy:
        """The discrepancy of ``quantity`` fitted on every full-data point so far."""
        full, cheap = self.writer.values["full"][quantity], self.writer.values["cheap"][quantity]
        at = self.writer.done["full"].ravel()
        return Discrepancy(log=self.refiner.log).fit(self.coords[at], full.ravel()[at],
                                                     cheap.ravel()[at])

    def _corrected(self, model: Discrepancy) -> np.ndarray:
        """The subset's loss corrected by ``model`` where it was evaluated, NaN elsewhere."""
        done = self.writer.done["cheap"].ravel()
        out = np.full(done.size, np.nan)
        out[done] = model.predict(self.coords[done], self.writer.values["cheap"][self.loss].ravel()[done])
        return out.reshape(self.grid.shape)

    def _estimate(self, quantity: str, with_std: bool = True):
        """The estimated picture of ``quantity`` and its standard deviation (None unless
        ``with_std``), both (rows, cols), equal to the evaluated value (deviation 0) at every
        full-data point; and the model."""
        done, full = self.writer.done, self.writer.values["full"][quantity]
        cheap = fill(self.writer.values["cheap"][quantity], done["cheap"])
        model = self._fit(quantity)
        picture, std = model.predict(self.coords, cheap.ravel(), return_std=True) if with_std else (
            model.predict(self.coords, cheap.ravel()), None)
        picture = picture.reshape(self.grid.shape)
        picture[done["full"]] = full[done["full"]]
        if std is not None:
            std = std.reshape(self.grid.shape)
            std[done["full"]] = 0.0
        return picture, std, model

    def _extra(self, model: Discrepancy):
        """(rows, cols) of ``extra`` subset points where full-data values would settle the
        contour lines most (see :func:`~landscape_dist.core.fidelity.most_uncertain`)."""
        picture, _, _ = self._estimate(self.loss, with_std=False)
        t = np.log(picture) if self.refiner.log and np.nanmin(picture) > 0 else picture
        band = (np.nanmax(t) - np.nanmin(t)) / (self.refiner.levels or 25)
        # the rise per grid cell, at least an eighth of a contour band: where the surface is
        # flatter no line is near enough to be moved by the discrepancy's error
        slope = np.maximum(np.nan_to_num(np.hypot(*np.gradient(t)), nan=np.inf), band / 8)
        candidates = (self.writer.done["cheap"] & ~self.writer.done["full"]).ravel()
        index = np.flatnonzero(candidates)
        picks = index[most_uncertain(model, self.coords[index], slope.ravel()[index],
                                     self.settings.extra)]
        rows, cols = np.unravel_index(np.sort(picks), self.grid.shape)
        return rows, cols

    def _store(self, full_names, attrs: dict, stride: int) -> dict:
        """Write the estimated pictures; the metadata stored with them."""
        done = self.writer.done
        pictures, stds, models = {}, {}, {}
        for q in full_names:  # the loss's deviation (the metrics' would cost as much again)
            if q in self.writer.values["cheap"]:
                pictures[q], stds[q], models[q] = self._estimate(q, with_std=q == self.loss)
        stds = {q: s for q, s in stds.items() if s is not None}
        n_full, n_cheap, n = int(done["full"].sum()), int(done["cheap"].sum()), done["full"].size
        loss = models[self.loss]
        meta = {"full_points": n_full, "cheap_points": n_cheap, "points": n,
                "examples": attrs["examples"], "of": attrs["of"],
                "examples_seed": attrs["examples_seed"], "coarse_stride": stride,
                "extra": self.settings.extra, "steps": self.steps,
                "rho": {q: round(m.rho_, 6) for q, m in models.items()},
                "length_scale": round(loss.length_, 4), "log": loss.log_,
                "largest_std": {q: float(np.nanmax(s)) for q, s in stds.items()},
                "tol": self.refiner.tol, "shift": self.refiner.shift,
                "levels": self.refiner.levels, "log_levels": self.refiner.log}
        self.writer.main.write_filled(pictures, ~done["full"], meta, kind=ESTIMATED, key="fidelity",
                                      std=stds)
        log.info("slice '%s': two fidelities, %d full-data points, %d subset points of %d examples, "
                 "the rest of %d estimated", self.sweep.plan.name, n_full, n_cheap,
                 attrs["examples"], n)
        return meta
