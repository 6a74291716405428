"""What a sweep is made of, prepared and checked before anything is written: the model at its
centre, the data, the recorded training path, and each slice's plane and grid.

Bad input fails here, before a pool starts or a file is written. Planes built from the workers'
Hessian products are built once the pool runs (:func:`build_deferred`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.schema import Config, SettingError, SliceConfig
from ..core.fidelity import CHEAP
from ..core.grid import Tile, split_tiles
from ..core.layout import WeightLayout
from ..core.plane import Plane
from ..errors import SourceError, in_terms
from ..execution.products import PoolHessian
from ..model.data_sources import IN_MEMORY
from ..model.runtime import import_tensorflow_quietly
from ..model.sources import DataSpec, ModelSpec, load_centre
from ..model.training import run_files
from ..model.trajectory import Trajectory, read_trajectory
from ..planes import PlaneContext, build_plane, resolve_axes
from ..registry import PLANE_KINDS, QUANTITIES
from ..planes.between import CHECKPOINT
from ..planes.checks import check_plane
from ..store.fingerprint import fingerprint
from ..store.journal import TileJournal
from ..store.preflight import check_sizes, warn_diverged
from .curves import BendTrainer, warn_off_grid


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


def data_specs(config: Config):
    """The DataSpec of the data, or a dict of them by name when several datasets are named."""
    def spec(source: str) -> DataSpec:
        if os.path.exists(source):  # workers may run elsewhere: give them an absolute path
            source = str(Path(source).resolve())
        return DataSpec(source, num_shards=config.data.shards,
                        examples=config.evaluation.examples,
                        examples_seed=config.evaluation.examples_seed)

    datasets = config.data.datasets
    if datasets is not None:
        return {k: spec(v) for k, v in datasets.items()}
    return with_subset(spec(config.data.source), config)


def with_subset(full: DataSpec, config: Config):
    """``full``, the one dataset, as the workers of ``config`` hold it: with two fidelities
    (``grid.fidelity``) a dict of it and its subset (``{'': full, 'cheap': subset}``), so that
    they compute on either; else ``full`` itself."""
    fidelity = next((s.grid.fidelity for s in config.slices if s.grid.fidelity), None)
    if fidelity is None:
        return full
    return {"": full, CHEAP: dataclasses.replace(full, examples=fidelity.examples,
                                                  examples_seed=fidelity.examples_seed)}


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
    if not path.exists():  # a directory in its place is named by the reader
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
    from ..model.checks import dtype_policies  # Keras: only where a sweep is prepared
    from ..model.filters import filter_rules

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
                           tuple(t.weights for t in runs), bend=BendTrainer(config, out, model))
    plans = []
    policies = dtype_policies(model)
    _check_for_model(config, layout.size)
    _check_subset(loaded.data_spec)
    for i, slice_cfg in enumerate(config.slices):
        where = f"slices.{i}.directions"
        with in_terms({"kind": f"'{where}.kind' setting", "axis": f"slices.{i}.grid.",
                       "file": f"'{where}.file' setting", "models": f"'{where}.models' setting",
                       "around": f"'{where}.around' setting",
                       "optimizer": f"'{where}.optimizer' setting",
                       "bend_file": f"'{where}.bend_file' setting",
                       "directions": f"'{where}' settings of slice '{slice_cfg.name}'"}):
            if PLANE_KINDS[slice_cfg.directions.kind].needs_products:
                plane = None  # built from the workers' Hessian products (see build_deferred)
            else:
                plane = build_plane(slice_cfg, context)
                check_plane(plane, layout.size, slice_cfg.grid.ndim)
                plane = dataclasses.replace(plane, meta={**plane.meta, "dtype_policies": policies})
                if plane.recompute is not None:
                    _check_recompute(model, config, where)
            recompute = plane is not None and plane.recompute is not None
            _check_quantities(slice_cfg, config, i, recompute)
            plans.append(SlicePlan(slice_cfg, plane, *resolve_axes(slice_cfg.grid, plane, every)))
            warn_off_grid(plans[-1], f"slices.{i}.grid")
    files = [out / run_files(i)[0] for i in range(1 + len(runs))] if traj is not None else None
    return SweepInputs(loaded.model_spec, loaded.data_spec, loaded.centre_file, layout,
                       non_trainable, traj, files, tuple(plans), runs, dataclasses.replace(
                           context, meta={"dtype_policies": policies}))


def _check_subset(data_spec) -> None:
    """Two fidelities: the subset must be smaller than the data (the data is read here once,
    so that both backends refuse it before a worker starts)."""
    if not isinstance(data_spec, dict) or CHEAP not in data_spec:
        return
    cheap = data_spec[CHEAP]
    total = len(data_spec[""].load()[0])
    if cheap.examples >= total:
        # arrays given in memory have no name a user would know
        data = "the data" if cheap.source.startswith(IN_MEMORY) else f"'{cheap.source}'"
        raise SettingError("grid.fidelity.examples", f"less than the {total} examples of {data} "
                           "(a subset)", cheap.examples,
                           "Give fewer examples, or remove grid.fidelity.")


def _check_for_model(config: Config, size: int) -> None:
    """Refuse the settings a model of ``size`` weights cannot meet (each slice's directions, the
    curvature at the centre, the sharpness along training), before anything is built or
    written."""
    if config.curvature is not None:
        config.curvature.check_for(size)
    if config.sharpness is not None:  # 'run' follows it after the sweep: refused before that
        config.sharpness.check_for(size)
    for i, slice_cfg in enumerate(config.slices):
        try:
            slice_cfg.directions.check_for(size)
        except SettingError as err:
            raise err.under(f"slices.{i}.directions") from None


def prepare_portable(config: Config, out: Path) -> SweepInputs:
    """:func:`prepare` with TensorFlow imported quietly first, its result without the model
    resolver and the bend trainer (closures over the Keras model, needed only while the planes
    are built), so that it pickles: what :func:`sweep` has a Ray worker run (see
    ``RayPool.call_beside``)."""
    import_tensorflow_quietly()
    inputs = prepare(config, out)
    return dataclasses.replace(inputs, context=dataclasses.replace(inputs.context,
                                                                   resolve_model=None,
                                                                   bend=None))


def _check_quantities(slice_cfg: SliceConfig, config: Config, i: int, recompute: bool) -> None:
    """Each quantity kind says whether its parts combine over shards of the data, and whether it
    needs the batch-norm statistics as given; refuse what the slice cannot give it."""
    kinds = {name: QUANTITIES[name] for name in slice_cfg.quantities}
    apart = [name for name, kind in kinds.items() if not kind.combines_over_shards]
    if config.data.shards > 1 and apart:
        raise SourceError(f"The 'slices.{i}.quantities' setting asks for {apart}, which are not "
                          f"combined from shards of the data ({kinds[apart[0]].why_not_over_shards}"
                          f"); data.shards is {config.data.shards}. Set data.shards=1, or sweep "
                          f"those quantities in a configuration of their own.")
    given = [name for name, kind in kinds.items() if kind.needs_given_statistics]
    if recompute and given:
        raise SourceError(f"The 'slices.{i}.quantities' setting asks for {given}, which "
                          f"{kinds[given[0]].why_given_statistics}; this slice re-estimates them "
                          f"at every point (batchnorm: recompute). Use batchnorm: centre or "
                          f"interpolate for this slice.")


@dataclass(frozen=True)
class CentreInputs:
    """The model at its centre and the data: what the curvature at the centre needs, and where a
    sweep starts. ``model`` is built, with the centre's weights loaded; ``centre`` (size,) is its
    flat trainable weights."""

    model_spec: ModelSpec
    model: object
    data_spec: DataSpec | dict
    centre_file: Path | None
    layout: WeightLayout
    centre: np.ndarray
    non_trainable: list


def centre_inputs(config: Config, out: Path) -> CentreInputs:
    """The model of ``config`` at its centre (``model.centre``, else ``out/model.keras`` from
    ``train``, else the source's own weights), and the data."""
    model_spec = ModelSpec.from_source(config.model.source, config.model.unsafe_deserialization)
    model = model_spec.build()
    centre_file = _centre_file(config, out)
    if centre_file is not None:
        load_centre(model, centre_file)
    layout = WeightLayout.from_variables(model.trainable_variables)
    return CentreInputs(
        model_spec=model_spec, model=model, data_spec=data_specs(config), centre_file=centre_file,
        layout=layout, centre=layout.flatten([v.numpy() for v in model.trainable_variables]),
        non_trainable=[v.numpy() for v in model.non_trainable_variables])


def build_deferred(inputs: SweepInputs, config: Config, pool, journal: TileJournal) -> SweepInputs:
    """Build the planes that need the workers' Hessian products, now that the pool runs; a plane
    built by an earlier, interrupted run of this sweep is read back from the journal instead (a
    recomputation could differ in the last bits and refuse the resumed tiles)."""
    if all(plan.plane is not None for plan in inputs.slices):
        return inputs
    plans = []
    for i, plan in enumerate(inputs.slices):
        if plan.plane is None:
            kind = PLANE_KINDS[plan.config.directions.kind]()
            stored = journal.resumed("directions", plan.name).get("")
            with in_terms({"kind": f"'slices.{i}.directions.kind' setting",
                           "directions": f"'slices.{i}.directions' settings of slice "
                                         f"'{plan.name}'"}):
                if stored is not None:
                    plane = kind.from_stored(plan.config.directions, inputs.context, stored)
                else:
                    pool.set_plane(inputs.context.centre,
                                   np.zeros((1, inputs.layout.size), np.float32),
                                   inputs.non_trainable)
                    context = dataclasses.replace(inputs.context, products=PoolHessian(pool),
                                                  curvature=config.curvature)
                    plane = build_plane(plan.config, context)
                    check_plane(plane, inputs.layout.size, plan.config.grid.ndim)
                    journal.append("directions", plan.name, "", kind.to_store(plane))
            plane = dataclasses.replace(plane, meta={**plane.meta, **inputs.context.meta})
            plan = dataclasses.replace(plan, plane=plane)
        plans.append(plan)
    return dataclasses.replace(inputs, slices=tuple(plans))
