"""``sweep``: evaluate every slice of a configuration on a pool and write the surface file.

Everything that can fail on bad input is prepared first (model, data, centre, path, planes, the
journal's fingerprint) while the pool starts, then the sweep writes. On Ray, a driver that has not
imported TensorFlow has its first worker prepare the planes with the TensorFlow that worker
imports anyway (its errors, warnings and log messages relayed), so that its own import does not
compete with the workers' for the cores. Each slice is a
:class:`SliceSweep` that resumes from the journal, writes tiles as they arrive, counts diverged
points and notifies the callbacks, for resumed and computed tiles alike.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .callbacks import CallbackList, LivePreview, ProgressBar, SweepCallback
from .config.schema import Config, PlotConfig, SliceConfig
from .core.grid import Tile, point_tiles, split_tiles
from .core.layout import WeightLayout
from .core.numbers import surface_numbers
from .core.quantities import main_loss
from .core.plane import Plane
from .core.refine import Refiner, fill
from .core.projection import off_plane_fraction, project_path
from .errors import OutputError, SourceError, check_interrupt, in_terms
from .execution.jobs import POINTS, WEIGHTS, Job
from .model.sources import DataSpec, ModelSpec, load_centre
from .model.training import run_files
from .model.trajectory import Trajectory, read_trajectory
from .planes import PLANE_KINDS, PlaneContext, build_plane, resolve_axes
from .planes.between import CHECKPOINT
from .preflight import check_sizes, warn_diverged
from .report import import_tensorflow_quietly
from .store.fingerprint import fingerprint, plane_digest
from .store.journal import TileJournal
from .store.outdir import check_writable, refuse_existing_surface, set_aside_draft
from .store.surface import SliceWriter, SurfaceWriter

__all__ = ["sweep", "SETTINGS", "package_versions"]

log = logging.getLogger("landscape_dist")

_PATH_CHUNK = 64  # recorded checkpoints per path job
_NUMBERS_MAX_POINTS = 4_000_000  # the numbers of a slice read its whole loss grid

# How the configuration names what lower layers' messages speak of (see errors.LandscapeError).
SETTINGS = {
    "model": "'model.source' setting",
    "data": "'data.source' setting",
    "shards": "'data.shards' setting",
    "one_shard": "data.shards=1",
    "centre": "'model.centre' setting",
    "unsafe": "model.unsafe_deserialization=true",
    "record_every": "train.record_every",
}


def package_versions() -> dict:
    """Versions of the packages a surface depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("landscape-dist", "numpy", "tensorflow", "keras", "ray", "scikit-learn", "h5py"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# ---------------------------------------------------------------- what a sweep is made of

@dataclass(frozen=True)
class SlicePlan:
    """A slice ready to sweep: its settings, plane, grid coordinates and tiles. ``plane`` is None
    for a kind built from the workers' products (Hessian eigenvectors) until the pool runs."""

    config: SliceConfig
    plane: Plane | None
    xs: np.ndarray
    ys: np.ndarray | None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def tiles(self) -> list[Tile]:
        return split_tiles(self.config.grid.shape, self.config.grid.tile, self.config.grid.order)


@dataclass(frozen=True)
class SweepInputs:
    """Everything a sweep needs, prepared and checked before anything is written."""

    model_spec: ModelSpec
    data_spec: DataSpec | dict  # a dict of DataSpecs by name for several datasets
    centre_file: Path | None
    layout: WeightLayout
    non_trainable: list
    trajectory: Trajectory | None
    trajectory_file: list[Path] | None  # the recorded runs' files, run 0 first
    slices: tuple[SlicePlan, ...]
    runs: tuple[Trajectory, ...] = ()  # the further training runs (train.runs)
    context: PlaneContext | None = None  # what the planes built once the pool runs start from

    def fingerprint(self, config: Config) -> dict:
        sources = ([s.source for s in self.data_spec.values()] if isinstance(self.data_spec, dict)
                   else self.data_spec.source)
        return fingerprint(config.to_dict(), self.model_spec.payload, sources, self.centre_file,
                           self.trajectory_file)


def _data_spec(config: Config):
    """The DataSpec of the data, or a dict of them by name when several datasets are named."""
    def spec(source: str) -> DataSpec:
        if os.path.exists(source):  # workers may run elsewhere: give them an absolute path
            source = str(Path(source).resolve())
        return DataSpec(source, num_shards=config.data.shards,
                        examples=config.evaluation.examples,
                        examples_seed=config.evaluation.examples_seed)

    datasets = config.data.datasets
    return spec(config.data.source) if datasets is None else {k: spec(v) for k, v in datasets.items()}


def _centre_file(config: Config, out: Path) -> Path | None:
    if config.model.centre:
        return Path(config.model.centre)
    trained = out / "model.keras"
    return trained if trained.is_file() else None


def _runs(out: Path, layout: WeightLayout) -> tuple[Trajectory, ...]:
    """The paths of the further training runs (``train.runs``), in order."""
    runs, index = [], 1
    while (out / run_files(index)[0]).is_file():
        runs.append(_trajectory(out, layout, None, run_files(index)[0]))
        index += 1
    return tuple(runs)


def _trajectory(out: Path, layout: WeightLayout, needed_by: str | None,
                name: str = "trajectory.h5") -> Trajectory | None:
    path = out / name
    if not path.is_file():
        if needed_by:
            raise SourceError(f"A '{needed_by}' slice needs the training path '{path}', which does "
                              f"not exist. Run {{train}} with the same {{out}} first.",
                              train="train()", out="output directory")
        return None
    traj = read_trajectory(path)
    if traj.layout.shapes != layout.shapes:
        raise SourceError(f"The trajectory '{path}' was recorded from another architecture "
                          f"({len(traj.layout.shapes)} tensors, {traj.layout.size} weights) than "
                          f"'model.source' ({len(layout.shapes)} tensors, {layout.size} weights). "
                          f"Train this model again with the same {{out}}.", out="output directory")
    return traj


def _model_resolver(model, layout: WeightLayout, paths: list):
    """``resolve(reference) -> (flat weights, non-trainable values or None)`` for the planes
    between models: 'path:i' is checkpoint i of the training path, 'run<r>:i' of training run r
    (their statistics were not recorded: None), anything else a .keras or .weights.h5 file
    loaded into the model. ``paths``: the recorded runs, run 0 first (None where not recorded)."""
    def resolve(ref: str):
        match = CHECKPOINT.match(ref)
        if match:
            run = int(match.group(2) or 0)
            traj = paths[run] if run < len(paths) else None
            if traj is None:
                raise SourceError(f"The model {ref!r} is a checkpoint of a training path, which "
                                  f"has not been recorded. Run {{train}} with the same {{out}} "
                                  f"first.", train="train()", out="output directory")
            try:
                return traj.weights[int(match.group(3))], None
            except IndexError:
                raise SourceError(f"The model {ref!r} must name a checkpoint of its training path "
                                  f"by its index, from 0 to {len(traj.weights) - 1} (or -1 for the "
                                  f"last).") from None
        saved = [v.numpy() for v in model.variables]
        try:
            with in_terms({"centre": f"model {ref!r}"}):
                load_centre(model, ref)
            return (layout.flatten([v.numpy() for v in model.trainable_variables]),
                    [v.numpy() for v in model.non_trainable_variables])
        finally:
            for var, value in zip(model.variables, saved):
                var.assign(value)
    return resolve


def _check_recompute(model, config: Config, where: str) -> None:
    """Re-estimated batch-norm statistics need batch normalisation, and one set of data."""
    import keras

    if not any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in model._flatten_layers(include_self=False, recursive=True)):
        raise SourceError(f"The '{where}.batchnorm' setting is 'recompute', but the model has no "
                          f"batch normalisation to re-estimate. Use batchnorm: centre.")
    if config.data.shards > 1:
        raise SourceError(f"The '{where}.batchnorm' setting is 'recompute', which re-estimates "
                          f"statistics on one calibration set; data.shards is {config.data.shards}. "
                          f"Set data.shards=1 for this slice's sweep, or use batchnorm: interpolate.")


def prepare(config: Config, out: Path) -> SweepInputs:
    """Load the model and its centre, the recorded path, and build every slice's plane and grid.

    Bad input fails here, before a pool starts or a file is written.
    """
    from .model.checks import dtype_policies  # Keras: only where a sweep is prepared
    from .model.filters import filter_rules

    check_sizes(config, out)
    loaded = centre_inputs(config, out)
    model, layout, centre = loaded.model, loaded.layout, loaded.centre
    needed_by = next((s.directions.kind for s in config.slices
                      if PLANE_KINDS[s.directions.kind]().uses_path(s.directions)), None)
    traj = _trajectory(out, layout, needed_by)
    runs = _runs(out, layout) if traj is not None else ()
    path = traj.weights if traj is not None else None
    every = None if traj is None else np.concatenate([t.weights for t in (traj, *runs)])
    warn_diverged(centre, traj)
    by_filter = any(s.directions.normalization == "filter" for s in config.slices)
    non_trainable = loaded.non_trainable
    context = PlaneContext(centre, layout, path, filter_rules(model, warn=by_filter), non_trainable,
                           _model_resolver(model, layout, [traj, *runs]),
                           tuple(t.weights for t in runs))
    plans = []
    policies = dtype_policies(model)
    for i, slice_cfg in enumerate(config.slices):
        where = f"slices.{i}.directions"
        with in_terms({"kind": f"'{where}.kind' setting", "axis": f"slices.{i}.grid.",
                       "file": f"'{where}.file' setting", "models": f"'{where}.models' setting",
                       "around": f"'{where}.around' setting"}):
            if PLANE_KINDS[slice_cfg.directions.kind].needs_products:
                plane = None  # built from the workers' Hessian products (see build_deferred)
            else:
                plane = build_plane(slice_cfg, context)
                plane = dataclasses.replace(plane, meta={**plane.meta, "dtype_policies": policies})
                if plane.recompute is not None:
                    _check_recompute(model, config, where)
            recompute = plane is not None and plane.recompute is not None
            if slice_cfg.quantities != ("loss",) and (config.data.shards > 1 or recompute):
                _check_curvature_quantities(slice_cfg, config, i)
            plans.append(SlicePlan(slice_cfg, plane, *resolve_axes(slice_cfg.grid, plane, every)))
    files = [out / run_files(i)[0] for i in range(1 + len(runs))] if traj is not None else None
    return SweepInputs(loaded.model_spec, loaded.data_spec, loaded.centre_file, layout,
                       non_trainable, traj, files, tuple(plans), runs, dataclasses.replace(
                           context, meta={"dtype_policies": policies}))


def prepare_portable(config: Config, out: Path) -> SweepInputs:
    """:func:`prepare` with TensorFlow imported quietly first, its result without the model
    resolver (a closure over the Keras model, needed only while the planes are built), so that
    it pickles: what :func:`sweep` has a Ray worker run (see ``RayPool.call_beside``)."""
    import_tensorflow_quietly()
    inputs = prepare(config, out)
    return dataclasses.replace(inputs, context=dataclasses.replace(inputs.context,
                                                                   resolve_model=None))


def _check_curvature_quantities(slice_cfg: SliceConfig, config: Config, i: int) -> None:
    """Eigenvalues at grid points need the whole data on one worker, and the statistics as given."""
    extra = [q for q in slice_cfg.quantities if q != "loss"]
    if config.data.shards > 1:
        raise SourceError(f"The 'slices.{i}.quantities' setting asks for {extra}, which are not "
                          f"combined from shards of the data (every Lanczos step needs the whole "
                          f"product); data.shards is {config.data.shards}. Set data.shards=1, or "
                          f"sweep those quantities in a configuration of their own.")
    raise SourceError(f"The 'slices.{i}.quantities' setting asks for {extra}, which differentiate "
                      f"the loss with the batch-norm statistics as given; this slice re-estimates "
                      f"them at every point (batchnorm: recompute). Use batchnorm: centre or "
                      f"interpolate for this slice.")


def centre_inputs(config: Config, out: Path):
    """The model at its centre and the data: an object with ``model_spec``, ``model`` (built, the
    centre's weights loaded), ``data_spec``, ``centre_file``, ``layout``, ``centre`` and
    ``non_trainable`` (what the curvature at the centre needs, and where a sweep starts)."""
    import types

    model_spec = ModelSpec.from_source(config.model.source, config.model.unsafe_deserialization)
    model = model_spec.build()
    centre_file = _centre_file(config, out)
    if centre_file is not None:
        load_centre(model, centre_file)
    layout = WeightLayout.from_variables(model.trainable_variables)
    return types.SimpleNamespace(
        model_spec=model_spec, model=model, data_spec=_data_spec(config), centre_file=centre_file,
        layout=layout, centre=layout.flatten([v.numpy() for v in model.trainable_variables]),
        non_trainable=[v.numpy() for v in model.non_trainable_variables])


def build_deferred(inputs: SweepInputs, config: Config, pool, journal: TileJournal) -> SweepInputs:
    """Build the planes that need the workers' Hessian products, now that the pool runs; a plane
    built by an earlier, interrupted run of this sweep is read back from the journal instead (a
    recomputation could differ in the last bits and refuse the resumed tiles)."""
    if all(plan.plane is not None for plan in inputs.slices):
        return inputs
    from .curvature import PoolHessian

    plans = []
    for i, plan in enumerate(inputs.slices):
        if plan.plane is None:
            kind = PLANE_KINDS[plan.config.directions.kind]()
            stored = journal.resumed("directions", plan.name).get("")
            with in_terms({"kind": f"'slices.{i}.directions.kind' setting"}):
                if stored is not None:
                    plane = kind.from_stored(plan.config.directions, inputs.context, stored)
                else:
                    pool.set_plane(inputs.context.centre,
                                   np.zeros((1, inputs.layout.size), np.float32),
                                   inputs.non_trainable)
                    context = dataclasses.replace(inputs.context, products=PoolHessian(pool),
                                                  curvature=config.curvature)
                    plane = build_plane(plan.config, context)
                    journal.append("directions", plan.name, "", kind.to_store(plane))
            plane = dataclasses.replace(plane, meta={**plane.meta, **inputs.context.meta})
            plan = dataclasses.replace(plan, plane=plane)
        plans.append(plan)
    return dataclasses.replace(inputs, slices=tuple(plans))


# ---------------------------------------------------------------- one slice

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

    def _accept(self, tile: Tile, result: dict, resumed: bool) -> None:
        """Store a tile's values (journalled first if computed now), count and notify."""
        check_interrupt()  # a Ctrl-C whose KeyboardInterrupt was swallowed stops here
        if not resumed:
            self.journal.append("tile", self.plan.name, tile.index, result)  # on disk first
        self.slice_writer.write_tile(tile, result)
        self.nonfinite += int(np.sum(~np.isfinite(result[self.loss_name])))
        if self._refined is not None:
            values, done = self._refined
            tile.place(values, result[self.loss_name])
            tile.place(done, np.ones(tile.size, bool))
        if resumed:
            self.callbacks.on_tile_resumed(self.plan.name, tile, result)
        else:
            self.callbacks.on_tile_end(self.plan.name, tile, result)

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
        pool.use(plan.config.quantities)
        self.slice_writer = self.writer.add_slice(name, plan.xs, plan.ys, pool.names, plane,
                                                  non_trainable)
        resumed = self.journal.resumed("tile", name)
        t0 = time.perf_counter()
        refined = None
        if plan.config.grid.refine is None:
            counts = self._run_tiles(pool, plan.tiles, resumed, announce=True)
        else:
            counts, refined = self._refine(pool, resumed)
        seconds = time.perf_counter() - t0
        info = self._describe(pool, *counts, seconds)
        if refined is not None:
            info["refinement"] = {k: v for k, v in refined.items() if k != "steps"}
        if plan.config.quantities != ("loss",):
            pool.use(("loss",))  # the path's true loss; eigenvalues along it are not asked for
        if trajectory is not None:
            info["path_off_plane_fraction"] = self._write_path(pool, trajectory)
            for i, run in enumerate(runs, start=1):
                info.setdefault("runs_off_plane_fraction", {})[f"run{i}"] = self._write_path(
                    pool, run, f"paths/run{i}")
        self.callbacks.on_slice_end(name, info)
        return info

    def _run_tiles(self, pool, tiles: list, resumed: dict, announce: bool) -> tuple[int, int, int]:
        """Accept the ``tiles`` the journal holds, compute the others on ``pool``; returns the
        tiles, the tiles resumed and the points computed."""
        name = self.plan.name
        by_index = {t.index: t for t in tiles}
        old = [t for t in tiles if t.index in resumed]
        todo = [t for t in tiles if t.index not in resumed]
        computed = sum(t.size for t in todo)
        if announce:
            self.callbacks.on_slice_begin(name, computed)
        for tile in old:
            self._accept(tile, resumed[tile.index], resumed=True)
        if old and announce:
            log.info("slice '%s': %d of %d tiles already done (resumed from %s); computing %d",
                     name, len(old), len(tiles), self.journal.path.name, len(todo))
        pool.run((Job(t.index, POINTS, t.points(self.plan.xs, self.plan.ys)) for t in todo),
                 lambda key, result: self._accept(by_index[key], result, resumed=False))
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
            totals += self._run_tiles(pool, tiles, resumed, announce=False)
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

    def _describe(self, pool, n_tiles: int, n_resumed: int, computed: int, seconds: float) -> dict:
        """The slice's summary once its tiles are in (and the attributes it adds to the file):
        counts, speed, the workers' evaluation strategies, the plane's description, the numbers
        derived from the loss grid, the eigenvalue ranges."""
        plan, name = self.plan, self.plan.name
        n_points = plan.config.grid.shape[0] * plan.config.grid.shape[1]
        choices = pool.choices() if hasattr(pool, "choices") else []
        if choices:  # how each worker evaluated (and, where it timed them, the alternatives)
            self.slice_writer.write_attr("evaluation_strategies", choices)
        drafts = {e.name: {"examples": e.n, "of": e.total}
                   for e in getattr(getattr(pool, "quantities", None), "stderrs", ())}
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
                **{k: plan.plane.meta[k] for k in ("kind", "cosine", "explained_variance_ratio",
                                                   "which", "eigenvalues", "converged",
                                                   "dtype_policies")
                   if k in plan.plane.meta}}
        if n_points <= _NUMBERS_MAX_POINTS:
            info["numbers"] = self.slice_writer.write_numbers(surface_numbers(
                plan.xs, plan.ys, self.slice_writer.read(self.loss_name)))
        for quantity in pool.names:  # per dataset ('train/hessian_max') when there are several
            if quantity.rsplit("/", 1)[-1].startswith("hessian_"):
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


def evaluate_weights(pool, weights: np.ndarray) -> dict:
    """True loss and metrics at every row of ``weights`` (T, size), computed by the pool."""
    chunks = {}
    jobs = [Job(i, WEIGHTS, weights[i:i + _PATH_CHUNK]) for i in range(0, len(weights), _PATH_CHUNK)]
    pool.run(jobs, chunks.__setitem__)
    return {name: np.concatenate([chunks[k][name] for k in sorted(chunks)]) for name in pool.names}


# ---------------------------------------------------------------- the whole sweep

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


def slice_quantities(config: Config) -> tuple[str, ...]:
    """Every quantity some slice asks for, 'loss' first."""
    return tuple(dict.fromkeys(q for s in config.slices for q in s.quantities))


def make_pool(config: Config, inputs, in_process: bool):
    """The pool ``config.cluster`` describes (in this process with ``in_process``), its workers
    built for every quantity of every slice."""
    from .execution.local import InProcessPool
    from .execution.ray_pool import RayPool

    quantities = slice_quantities(config)
    if in_process:
        return InProcessPool(inputs.model_spec, inputs.data_spec, config.evaluation, quantities)
    return RayPool(inputs.model_spec, inputs.data_spec, config.evaluation, config.cluster,
                   quantities=quantities)


def start_pool(config: Config):
    """A Ray pool for ``config`` whose actors are still starting (see ``RayPool.wait_ready``)."""
    from .execution.ray_pool import RayPool

    model_spec = ModelSpec.from_source(config.model.source, config.model.unsafe_deserialization)
    return RayPool(model_spec, _data_spec(config), config.evaluation, config.cluster,
                   quantities=slice_quantities(config), wait=False)


def _callbacks(config: Config, inputs: SweepInputs, out: Path, callbacks, progress: bool, names):
    """The user's callbacks, then the progress bar and the live preview where asked for."""
    hooks = CallbackList(list(callbacks or []) + ([ProgressBar()] if progress else []))
    if config.plot.preview_every_s:
        grids = {plan.name: (plan.xs, plan.ys) for plan in inputs.slices}
        hooks.append(LivePreview(out, grids, config.plot.preview_every_s, main_loss(names)))
    return hooks


def final_config(config: Config, out: Path) -> Config:
    """The final sweep after a draft: ``config`` on every example, the draft in ``out`` set
    aside (``surface_draft.h5``, or its unfinished journal)."""
    for moved in set_aside_draft(out):
        log.info("the draft is kept as %s", moved)
    return dataclasses.replace(config, evaluation=dataclasses.replace(config.evaluation,
                                                                      examples=None))


def sweep(config: Config, out: str | Path, *, pool=None, callbacks: list[SweepCallback] | None = None,
          overwrite: bool = False, progress: bool = True, in_process: bool = False,
          started=None, final: bool = False) -> dict:
    """Evaluate every slice of ``config`` and write ``out/surface.h5``.

    The centre is ``model.centre`` if set, else ``out/model.keras`` from ``train`` if present, else
    the model source's own weights. ``pool`` (an :class:`InProcessPool` or :class:`RayPool`) is
    created from ``config.cluster`` when not given (``in_process=True``: no Ray). Returns a summary
    dict per slice (points, seconds, points/s, non-finite count, cosine, explained variance).

    Finished tiles go to ``out/surface.h5.journal`` as they arrive; running the same sweep again
    after an interruption (even SIGKILL) computes only the tiles the journal lacks. A journal
    from a different configuration is refused unless ``overwrite``. ``surface.h5`` appears, whole,
    only when every slice is done.

    ``started``: a pool from :func:`start_pool` whose actors are still starting (``run`` starts
    it before training); the sweep takes it over and closes it. ``final``: the sweep on every
    example after a draft on a subset (``evaluation.examples``): the draft's surface (or its
    unfinished journal) is set aside as ``surface_draft.h5`` first.
    """
    out = Path(out)
    if final:
        config = final_config(config, out)
    with in_terms(SETTINGS):
        refuse_existing_surface(out, overwrite)
        check_writable(out, create=False)  # created once the input has been checked
        own_pool = pool is None
        # Ray actors start (TensorFlow, model, data) while the planes are prepared
        early = started or (start_pool(config) if own_pool and not in_process else None)
        try:
            inputs = None
            if early is not None and "tensorflow" not in sys.modules:
                # a worker beside this process prepares them with the TensorFlow it imports
                # anyway: this process's own import would take the cores the workers' need
                inputs = early.call_beside("landscape_dist.sweep:prepare_portable", config, out)
            if inputs is None:
                inputs = prepare_portable(config, out)
            journal_path = out / "surface.h5.journal"
            fingerprint_ = inputs.fingerprint(config)
            checked = None if overwrite else TileJournal.check(journal_path, fingerprint_)
        except BaseException:
            if early is not None:
                early.close()
            raise
        writer = journal = None
        partial, target = out / "surface.h5.partial", out / "surface.h5"
        try:
            if own_pool:
                pool = early.wait_ready() if early is not None else make_pool(config, inputs, in_process)
            check_writable(out)
            journal = TileJournal.open(journal_path, fingerprint_, resume=not overwrite, checked=checked)
            inputs = build_deferred(inputs, config, pool, journal)
            hooks = _callbacks(config, inputs, out, callbacks, progress, pool.names)
            summary = {"slices": {}, "centre": str(inputs.centre_file) if inputs.centre_file else
                       "source weights"}
            writer = SurfaceWriter(partial, config.to_dict(), package_versions())
            for plan in inputs.slices:
                summary["slices"][plan.name] = SliceSweep(
                    plan, writer, journal, hooks, inputs.non_trainable, config.plot).run(
                        pool, inputs.trajectory, inputs.runs)
            writer.finish()
            os.replace(partial, target)
        finally:
            if writer is not None:
                writer.close()
            if journal is not None:
                journal.close()
            if own_pool and pool is not None:
                pool.close()
        journal.close(delete=True)
        summary["surface"] = str(target)
        groups = seed_groups(inputs.slices, summary["slices"])
        if groups:
            summary["seed_groups"] = groups
        return summary
