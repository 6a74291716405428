"""One slice being swept (:class:`SliceSweep`): resumed from the journal, its tiles written as they
arrive, diverged points counted and the callbacks notified, for resumed and computed tiles
alike; then the training path projected and evaluated."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..callbacks import SweepCallback
from ..config.schema import PlotConfig
from ..core.grid import point_tiles
from ..core.numbers import surface_numbers
from ..core.projection import off_plane_fraction, project_path
from ..core.quantities import main_loss
from ..core.refine import Refiner, fill
from ..errors import OutputError, check_interrupt
from ..execution.jobs import POINTS, WEIGHTS, Job, LazyJobs
from ..model.quantities import kind_of_quantity
from ..model.trajectory import Trajectory
from ..planes.base import kind_of
from ..store.fingerprint import plane_digest
from ..store.journal import TileJournal
from ..store.surface import SliceWriter, SurfaceWriter
from .curves import sweep_curves
from .fidelity import TwoFidelities
from .inputs import SlicePlan

log = logging.getLogger("landscape_dist")

_PATH_CHUNK = 64  # recorded checkpoints per path job
_NUMBERS_MAX_POINTS = 4_000_000  # the numbers of a slice read its whole loss grid


class SliceSweep:
    """One slice being swept: resumes from the journal, writes tiles as they arrive, counts
    diverged points and notifies the callbacks; then evaluates and stores the path."""

    def __init__(self, plan: SlicePlan, writer: SurfaceWriter, journal: TileJournal,
                 callbacks: SweepCallback, non_trainable: list, plot: PlotConfig | None = None):
        self.plan = plan
        self.plot = plot or PlotConfig()  # the contour levels a refinement resolves by default
        self._refined = None  # (main loss values, done) while a refined slice is swept
        self.journal = journal
        self.callbacks = callbacks
        self.non_trainable = non_trainable
        self.writer = writer
        self.slice_writer: SliceWriter | None = None
        self.nonfinite = 0

    def _check_plane(self) -> None:
        """The plane must be the one of the unfinished sweep being resumed (if any)."""
        name = self.plan.name
        plane = self.plan.plane
        digest = plane_digest(plane.centre, plane.directions, plane.non_trainable,
                              plane.non_trainable_directions)
        earlier = self.journal.resumed("plane", name)
        if earlier and earlier[""] != digest:
            raise OutputError(f"The plane of slice '{name}' differs from the one of the unfinished "
                              f"sweep in '{self.journal.path.parent}' (the centre weights or the "
                              f"training path changed). Pass {{overwrite}} to start again, or give "
                              f"another {{out}}.", overwrite="overwrite=True", out="output directory")
        if not earlier:
            self.journal.append("plane", name, "", digest)

    def _accept(self, batch: list, resumed: bool) -> None:
        """Store tiles ``[(tile, result), ...]`` that came in together (computed now: journalled
        first, all in one record, so that none is reported before it is on disk), count their
        non-finite losses and notify the callbacks, tile by tile."""
        check_interrupt()  # a Ctrl-C whose KeyboardInterrupt was swallowed stops here
        if not resumed:
            self.journal.append_tiles(self.plan.name, [(t.index, r) for t, r in batch])
        for tile, result in batch:  # held in memory, written into the file by chunk
            self.slice_writer.write_tile(tile, result)
        notify = self.callbacks.on_tile_resumed if resumed else self.callbacks.on_tile_end
        for tile, result in batch:
            loss = result.get(self.loss_name, ())  # none in a tile of two fidelities' subset alone
            self.nonfinite += int(np.size(loss) - np.count_nonzero(np.isfinite(loss)))
            if self._refined is not None:
                values, done = self._refined
                tile.place(values, loss)
                tile.place(done, np.ones(tile.size, bool))
            notify(self.plan.name, tile, result)

    def run(self, pool, trajectory: Trajectory | None, runs: tuple = ()) -> dict:
        """Sweep the slice on ``pool``; returns its summary. ``runs``: further recorded training
        runs, projected and evaluated beside the path."""
        plan, name = self.plan, self.plan.name
        self._check_plane()
        plane = plan.plane
        self.loss_name = main_loss(pool.names)
        non_trainable = plane.non_trainable if plane.non_trainable is not None else self.non_trainable
        pool.set_plane(plane.centre, plane.directions, non_trainable, plane.non_trainable_directions,
                       plane.recompute)
        pool.select_quantities(plan.config.quantities)
        self.slice_writer = self.writer.add_slice(name, plan.xs, plan.ys, pool.names, plane,
                                                  non_trainable)
        resumed = self.journal.resumed("tile", name)
        t0 = time.perf_counter()
        refined = fidelity = None
        if plan.config.grid.fidelity is not None:
            counts, fidelity = TwoFidelities(self).run(pool, resumed)
        elif plan.config.grid.refine is None:
            counts = self.run_tiles(pool, plan.tiles, resumed, announce=True)
        else:
            counts, refined = self._refine(pool, resumed)
        seconds = time.perf_counter() - t0
        info = self._summary(pool, *counts, seconds)
        if refined is not None:
            info["refinement"] = {k: v for k, v in refined.items() if k != "steps"}
        if fidelity is not None:
            info["fidelity"] = {k: v for k, v in fidelity.items() if k != "steps"}
        if plan.config.quantities != ("loss",):
            pool.select_quantities(("loss",))  # the path's true loss; eigenvalues along it are not asked for
        info.update(sweep_curves(plane, pool, self.slice_writer, evaluate_weights))
        if trajectory is not None:
            info["path_off_plane_fraction"] = self._write_path(pool, trajectory)
            for i, run in enumerate(runs, start=1):
                info.setdefault("runs_off_plane_fraction", {})[f"run{i}"] = self._write_path(
                    pool, run, f"paths/run{i}")
        self.callbacks.on_slice_end(name, info)
        return info

    def run_tiles(self, pool, tiles: list, resumed: dict, announce: bool) -> tuple[int, int, int]:
        """Accept the ``tiles`` the journal holds, compute the others on ``pool``; returns the
        tiles, the tiles resumed and the points computed. The one way a slice's points are
        swept, also for the steps of a slice swept in parts (two fidelities: ``TwoFidelities``)."""
        name = self.plan.name
        by_index = {t.index: t for t in tiles}
        old = [t for t in tiles if t.index in resumed]
        todo = [t for t in tiles if t.index not in resumed]
        computed = sum(t.size for t in todo)
        if announce:
            self.callbacks.on_slice_begin(name, computed)
        if old:
            self._accept([(tile, resumed[tile.index]) for tile in old], resumed=True)
        if old and announce:
            log.info("slice '%s': %d of %d tiles already done (resumed from %s); computing %d",
                     name, len(old), len(tiles), self.journal.path.name, len(todo))
        pool.run_batches(
            LazyJobs(todo, lambda t: Job(t.index, POINTS, t.points(self.plan.xs, self.plan.ys))),
            lambda batch: self._accept([(by_index[k], r) for k, r in batch], resumed=False))
        return len(tiles), len(old), computed

    def _refine(self, pool, resumed: dict) -> tuple[tuple[int, int, int], dict]:
        """Sweep the slice by adaptive refinement (``grid.refine``): step by step, the points
        the values so far call for, as tiles of listed points numbered on from the previous
        step's (so a resumed sweep, recomputing each step's points from the journalled values,
        meets the same tiles); then store the interpolated picture beside the values."""
        plan, grid, settings = self.plan, self.plan.config.grid, self.plan.config.grid.refine
        refiner = Refiner(grid.shape, settings.tol,
                          settings.levels or self.plot.levels,
                          self.plot.log_levels if settings.log_levels is None else settings.log_levels,
                          settings.shift)
        self._refined = values, done = np.full(grid.shape, np.nan), np.zeros(grid.shape, bool)
        self.callbacks.on_slice_begin(plan.name, None)  # how many points is not known ahead
        size, first, totals, steps = grid.tile[0] * grid.tile[1], 0, np.zeros(3, int), []
        for step in refiner.steps():
            rows, cols = refiner.points(step, values, done)
            tiles = point_tiles(rows, cols, size, first)
            first += len(tiles)
            totals += self.run_tiles(pool, tiles, resumed, announce=False)
            steps.append({"step": step[0], "stride": step[1], "points": int(len(rows))})
        self._refined = None
        if totals[1]:
            log.info("slice '%s': %d tiles already done (resumed from %s)", plan.name, totals[1],
                     self.journal.path.name)
        evaluated, n_points = int(done.sum()), done.size
        meta = {"evaluated": evaluated, "points": n_points,
                "fraction": round(evaluated / n_points, 4), "steps": steps,
                "tol": refiner.tol, "shift": refiner.shift, "levels": refiner.levels,
                "log_levels": refiner.log}
        pictures = {q: fill(self.slice_writer.read(q), done) for q in pool.names}
        self.slice_writer.write_filled(pictures, ~done, meta)
        log.info("slice '%s': refined, %d of %d points evaluated (%.1f%%), the rest interpolated",
                 plan.name, evaluated, n_points, 100 * evaluated / n_points)
        return (int(totals[0]), int(totals[1]), int(totals[2])), meta

    def _summary(self, pool, n_tiles: int, n_resumed: int, computed: int, seconds: float) -> dict:
        """The slice's summary once its tiles are in (and the attributes it adds to the file):
        counts, speed, the workers' evaluation strategies, the plane's description, the numbers
        derived from the loss grid, the eigenvalue ranges."""
        plan, name = self.plan, self.plan.name
        n_points = plan.config.grid.shape[0] * plan.config.grid.shape[1]
        choices = pool.choices()
        if choices:  # how each worker evaluated (and, where it timed them, the alternatives)
            self.slice_writer.write_attr("evaluation_strategies", choices)
        drafts = {e.name: {"examples": e.n, "of": e.total}
                  for e in pool.quantities.stderrs}
        if drafts:  # evaluated on a subset of the examples (evaluation.examples)
            self.slice_writer.write_attr("subset", drafts)
        if self.nonfinite:
            log.warning("slice '%s': %d of %d points have a NaN or infinite loss (kept in the file, "
                        "masked in the figures)", name, self.nonfinite, n_points)
        info = {"points": n_points, "tiles": n_tiles, "tiles_resumed": n_resumed,
                "tiles_computed": n_tiles - n_resumed, "seconds": round(seconds, 3),
                "points_per_s": round(computed / seconds, 1) if seconds > 0 and computed else None,
                "nonfinite_points": self.nonfinite, "evaluation_strategies": choices,
                **({"subset": drafts} if drafts else {}),
                **_plane_summary(plan.plane.meta)}
        if n_points <= _NUMBERS_MAX_POINTS:
            info["numbers"] = self.slice_writer.write_numbers(surface_numbers(
                plan.xs, plan.ys, self.slice_writer.read(self.loss_name)))
        for quantity in pool.names:  # per dataset ('train/hessian_max') when there are several
            if _summarises_range(quantity):
                values = self.slice_writer.read(quantity)
                info[f"{quantity}_range"] = ([float(np.nanmin(values)), float(np.nanmax(values))]
                                             if np.isfinite(values).any() else None)
        return info

    def _write_path(self, pool, trajectory: Trajectory, where: str = "path") -> float:
        """Project the path onto the plane, evaluate its true loss, store both; returns the
        off-plane fraction of the path."""
        plane, weights = self.plan.plane, trajectory.weights
        coords, residual, relative = project_path(weights, plane.centre, plane.directions)
        distance = np.linalg.norm(weights.astype(np.float64) - plane.centre, axis=1)
        values = evaluate_weights(pool, weights)
        self.slice_writer.write_path(coords, residual, relative, distance, trajectory.step,
                                     trajectory.epoch, values, where)
        return round(off_plane_fraction(residual, distance), 4)


def _plane_summary(meta: dict) -> dict:
    """What a slice's summary says of its plane: the keys its kind names, and the dtype
    policies the sweep adds to every plane."""
    keys = (*kind_of(meta).summary_keys, "dtype_policies")
    return {k: meta[k] for k in dict.fromkeys(keys) if k in meta}


def _summarises_range(quantity: str) -> bool:
    """Whether a slice's summary gives the range of ``quantity`` (``<quantity>_range``), as its
    kind says (the Hessian's eigenvalues: 'hessian_max', or 'train/hessian_max' per dataset)."""
    return kind_of_quantity(quantity).summary_range


def evaluate_weights(pool, weights: np.ndarray) -> dict:
    """True loss and metrics at every row of ``weights`` (T, size), computed by the pool."""
    chunks = {}
    jobs = [Job(i, WEIGHTS, weights[i:i + _PATH_CHUNK]) for i in range(0, len(weights), _PATH_CHUNK)]
    pool.run(jobs, chunks.__setitem__)
    return {name: np.concatenate([chunks[k][name] for k in sorted(chunks)]) for name in pool.names}


def seed_groups(plans, infos: dict) -> dict:
    """For slices expanded from one random slice's seeds: each seed's numbers side by side, with
    their mean and standard deviation across seeds."""
    groups: dict = {}
    for plan in plans:
        group = plan.plane.meta.get("seed_group")
        if group:
            groups.setdefault(group, []).append(plan.name)
    out = {}
    for group, names in groups.items():
        rows = {}
        for name in names:
            numbers = infos[name].get("numbers") or {}
            quadratic = numbers.get("quadratic") or {}
            rows[name] = {"loss_at_centre": numbers.get("loss_at_centre"),
                          "top_curvature": max(quadratic.get("eigenvalues") or [np.nan]),
                          **{f"basin_width_{k}": v for k, v in (numbers.get("basin_width") or {}).items()}}
        stats = {}
        for key in next(iter(rows.values())):
            values = np.array([np.nan if r[key] is None else r[key] for r in rows.values()], float)
            if np.isfinite(values).any():
                stats[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values))}
        out[group] = {"slices": rows, "across_seeds": stats}
    return out
