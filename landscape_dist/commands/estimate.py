"""A cost estimate before the work (``sweep --dry-run``, ``run --dry-run``): nothing is written.

Per slice: its points and tiles; the forward FLOPs per point (the Dense/Conv layers over the
whole dataset); the points per second one worker reaches on one probe tile of the slice, measured
here in this process (compiled, the strategy timed as a worker would, the slice's quantities);
the workers the cluster would give; the estimated wall time of the sweep, each worker at the
probe's rate; and the tile rule (:func:`tile_rule`): each tile's seconds on a worker, the tiles per
second the driver must take, and the tile of about a second of a worker's time. With adaptive
refinement (``grid.refine``) the points evaluated depend on the surface itself, so a refined
sweep's time is given as bounds: at least the two coarse lattices every refinement evaluates
whole, at most every point. What a slice's kind does beside its grid (a curve's bend trained
first, its curves' points: ``DirectionConfig.preparation``) is added to the totals, roughly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..config.schema import Config
from ..config.words import SETTING_WORDS
from ..core.grid import Tile, coarsest_stride
from ..errors import in_terms
from ..core.quantities import POINTS
from ..core.fidelity import coarse_stride
from ..core.refine import lattice, strides
from ..store.preflight import check_sizes, tile_count
from ..sweeping.inputs import data_specs
from ..sweeping.pools import LOCAL, backend_of


def _workers(config: Config) -> tuple[int, str]:
    """The workers the pool would have, and where that number comes from (a local Ray is not
    started for this: its CPUs are this machine's)."""
    cluster = config.cluster
    if cluster.address:
        from ..execution.cluster import check_resources, connect_ray

        connect_ray(cluster.address)
        resolved = check_resources(cluster)
        return resolved.num_workers, f"the cluster at {cluster.address}"
    if cluster.num_workers is not None:
        return cluster.num_workers, "cluster.num_workers"
    return max(1, int((os.cpu_count() or 1) // cluster.cpus_per_worker)), "this machine's CPUs"


def _probe(config: Config, slice_cfg, model_spec, data_spec, threads: int | None,
           seconds_budget: float = 20.0) -> dict:
    """Points per second of one worker on the slice's first tile (at most as many points as fit
    in ``seconds_budget`` after compiling), with random directions: the cost of a point does not
    depend on the plane."""
    from ..core.directions import random_directions
    from ..core.grid import axis_coordinates
    from ..core.layout import WeightLayout
    from ..execution.worker import LandscapeWorker
    from ..model.reference import flops_per_example

    try:
        worker = LandscapeWorker(model_spec, data_spec, config.evaluation, threads=threads,
                                 quantities=tuple(slice_cfg.quantities))
    except RuntimeError:  # TensorFlow already running in this process: its threads stay
        worker = LandscapeWorker(model_spec, data_spec, config.evaluation,
                                 quantities=tuple(slice_cfg.quantities))
    ev = worker.evaluator
    layout = WeightLayout.from_variables(ev.model.trainable_variables)
    centre = layout.flatten([v.numpy() for v in ev.model.trainable_variables])
    k = slice_cfg.grid.ndim
    worker.set_plane(centre, random_directions(centre, layout, k, np.random.default_rng(0)),
                     [v.numpy() for v in ev.model.non_trainable_variables])
    grid = slice_cfg.grid
    tile = first_tile(grid.shape, grid.tile, grid.order)
    axis = lambda a: axis_coordinates(-1.0, 1.0, a.points, a.spacing)  # noqa: E731
    points = tile.points(axis(grid.x), None if grid.y is None else axis(grid.y))
    t0 = time.perf_counter()
    worker.evaluate(POINTS, points[:2])  # compiles
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    worker.evaluate(POINTS, points[:2])
    per_point = max((time.perf_counter() - t0) / 2, 1e-6)
    n = int(min(len(points), max(2, seconds_budget / per_point)))
    t0 = time.perf_counter()
    worker.evaluate(POINTS, points[:n])  # the first job big enough: strategies timed on it
    warm += time.perf_counter() - t0
    t0 = time.perf_counter()
    worker.evaluate(POINTS, points[:n])
    rate = n / (time.perf_counter() - t0)
    return {"probe_points": n, "points_per_s": rate, "compile_s": warm,
            "flop_per_point": flops_per_example(ev.model) * ev.n_examples,
            "examples": ev.n_examples, "strategy": ev.choice}


TILE_SECONDS = 1.0  # a worker's time per tile the tile rule aims at


def tile_for_rate(points_per_s: float, shape: tuple[int, int],
                  seconds: float = TILE_SECONDS) -> tuple[int, int]:
    """The tile rule: the (rows, columns) of a tile that takes one worker about ``seconds`` at
    ``points_per_s`` (its measured or estimated rate), as square as the ``shape`` (rows,
    columns) of the grid allows, never larger than it; a 1-D grid (one row) gets a run of
    columns. With a second of work per tile, a driver that takes T tiles a second feeds T
    workers, so the tile, not the cluster, sets what the driver must sustain."""
    rows, cols = shape
    n = max(1, int(round(points_per_s * seconds)))
    if rows == 1:
        return 1, min(n, cols)
    r = min(rows, max(1, int(round(n ** 0.5))))
    return r, min(cols, max(1, int(round(n / r))))


def tile_rule(points_per_tile: int, points_per_s: float, workers: int, shape: tuple[int, int],
              seconds: float = TILE_SECONDS) -> dict:
    """What the tile rule says of a slice: each tile's seconds on one worker (at
    ``points_per_s``), the tiles per second the driver must take from ``workers`` workers,
    and the tile of about ``seconds`` (:func:`tile_for_rate`) with its own tiles per second."""
    tile_s = points_per_tile / points_per_s
    rule = tile_for_rate(points_per_s, shape, seconds)
    rule_s = rule[0] * rule[1] / points_per_s
    return {"points_per_tile": points_per_tile, "tile_s": tile_s,
            "driver_tiles_per_s": workers / tile_s, "tile_rule_s": seconds,
            "rule_tile": list(rule), "rule_tile_s": rule_s,
            "rule_driver_tiles_per_s": workers / rule_s}


def first_tile(shape: tuple[int, int], tile: tuple[int, int], order: str) -> Tile:
    """The first tile :func:`~landscape_dist.core.grid.split_tiles` would make, made alone (a
    large grid's tiles are not all made to take one)."""
    stride = coarsest_stride(shape) if order == "coarse_to_fine" else 1
    rows, cols = range(0, shape[0], stride)[:tile[0]], range(0, shape[1], stride)[:tile[1]]
    return Tile(0, rows.start, rows[-1] + 1, cols.start, cols[-1] + 1, stride, stride)


def estimate(config: Config, in_process: bool = False, out: str | Path | None = None) -> dict:
    """The estimate of sweeping every slice of ``config`` (see the module docstring); with
    ``in_process`` (or ``cluster.backend: local``) one worker with this process's threads, else
    the pool's workers, each probed
    with the threads a worker gets (``cluster.cpus_per_worker``). Refuses first what the sweep
    would refuse for its sizes (the driver's memory; the disk under ``out`` when given), before
    anything is built."""
    from ..model.sources import ModelSpec

    with in_terms(SETTING_WORDS):
        check_sizes(config, None if out is None else Path(out))
    model_spec = ModelSpec.from_source(config.model.source, config.model.unsafe_deserialization)
    data_spec = data_specs(config)
    several = len(config.data.datasets) if config.data.datasets else 1
    if isinstance(data_spec, dict):  # the first dataset's cost stands for each (two
        data_spec = next(iter(data_spec.values()))  # fidelities: every example's)
    here = backend_of(config, in_process) == LOCAL
    workers, source = (1, "in this process") if here else _workers(config)
    threads = None if here else config.cluster.threads_per_worker
    groups = max(1, workers // max(1, config.data.shards))  # each job goes to every shard
    out, total, low, high = {"workers": workers, "workers_from": source, "slices": {}}, 0.0, 0.0, 0.0
    probes: dict = {}
    for slice_cfg in config.slices:
        key = (tuple(slice_cfg.quantities), slice_cfg.grid.ndim, slice_cfg.grid.tile)
        first = key not in probes  # workers compile (and time strategies) once per kind of slice
        if first:
            probes[key] = _probe(config, slice_cfg, model_spec, data_spec, threads)
        entry, seconds, prep, (lo, hi) = _slice_estimate(slice_cfg, config, probes[key], first,
                                                         groups, several)
        total += seconds + prep
        low, high = low + lo, high + hi
        low, high = low + prep, high + prep
        out["slices"][slice_cfg.name] = entry
    out["estimated_s"] = round(total, 1)  # every point of every slice
    out["as_configured_s"] = [round(low, 1), round(high, 1)]  # refined slices: their bounds
    return out


def _slice_estimate(slice_cfg, config: Config, probe: dict, first: bool, groups: int,
                    several: int) -> tuple[dict, float, float, tuple[float, float]]:
    """One slice's estimate from its ``probe`` (``first``: the compile time counts here):
    its summary entry, the seconds of every point, those of what is prepared beside the grid,
    and the bounds of its seconds as configured (refined or two-fidelity), preparation apart.
    ``groups`` jobs run at once; ``several`` datasets are each evaluated."""
    n_points = slice_cfg.grid.shape[0] * slice_cfg.grid.shape[1]
    compile_s = probe["compile_s"] if first else 0.0
    rate = probe["points_per_s"] * groups / several
    seconds = n_points / rate + compile_s
    before = _preparation(slice_cfg, config, probe["points_per_s"], rate)
    prep = before.get("estimated_s", 0.0)  # beside the grid: counted in the totals
    least = _coarse_points(slice_cfg.grid.shape) if slice_cfg.grid.ndim == 2 else n_points
    refined = (least / rate + compile_s, seconds)
    fidelity = (_fidelity_bounds(slice_cfg.grid, rate, probe["examples"] * config.data.shards,
                                 compile_s) if slice_cfg.grid.fidelity is not None else None)
    if fidelity is not None:
        bounds = (fidelity["estimated_s"][0], fidelity["estimated_s"][1])
    else:
        bounds = (refined[0] if slice_cfg.grid.refine is not None else seconds, seconds)
    entry = {
        "points": n_points,
        "tiles": tile_count(slice_cfg.grid.shape, slice_cfg.grid.tile, slice_cfg.grid.order),
        "quantities": list(slice_cfg.quantities),
        "gflop_per_point": probe["flop_per_point"] * several / 1e9,
        "probe_points_per_s": round(probe["points_per_s"], 1),
        "probe_points": probe["probe_points"], "estimated_s": round(seconds, 1),
        "refined": slice_cfg.grid.refine is not None, "refined_points_at_least": least,
        "refined_estimated_s": [round(refined[0], 1), round(refined[1], 1)],
        **tile_rule(slice_cfg.grid.tile[0] * slice_cfg.grid.tile[1],
                    probe["points_per_s"] / several, groups, slice_cfg.grid.shape),
        **({"fidelity": fidelity} if fidelity else {}),
        **({"preparation": before} if before else {})}
    return entry, seconds, prep, bounds


TRAINING_PASSES = 3  # a training epoch costs about three forward passes over the data


def _preparation(slice_cfg, config: Config, points_per_s: float, rate: float) -> dict:
    """What the slice's kind does beside its grid (``DirectionConfig.preparation``), timed: an
    epoch of training as :data:`TRAINING_PASSES` points on one worker (a point is a forward
    pass over the data), its extra points at the slice's ``rate``; {} for none."""
    before = slice_cfg.directions.preparation(config.train)
    if not before:
        return {}
    seconds = (before.get("epochs", 0) * TRAINING_PASSES / points_per_s
               + before.get("points", 0) / rate)
    return {**before, "estimated_s": round(seconds, 1)}


def _fidelity_bounds(grid, rate: float, examples: int, compile_s: float) -> dict:
    """Two fidelities' points and time bounds: the coarse lattice and the extra points on every
    example, and the subset's points (at least the refinement's coarse lattices, at most every
    point) at the full data's ``rate`` scaled by the examples (a point costs a pass over them;
    the subset's evaluator compiles once more)."""
    fidelity = grid.fidelity
    s = coarse_stride(grid.shape, fidelity.coarse)
    full = len(lattice(grid.shape[0], s)) * len(lattice(grid.shape[1], s)) + fidelity.extra
    cheap_rate = rate * max(1.0, examples / fidelity.examples)
    least = max(_coarse_points(grid.shape), full - fidelity.extra)
    n_points = grid.shape[0] * grid.shape[1]
    seconds = full / rate + 2 * compile_s
    return {"full_points": full, "subset_points_at_least": least,
            "estimated_s": [round(seconds + least / cheap_rate, 1),
                            round(seconds + n_points / cheap_rate, 1)]}


def _coarse_points(shape: tuple[int, int]) -> int:
    """The points every refinement evaluates: the lattice of the second-coarsest stride."""
    visited = strides(shape)
    s = visited[min(1, len(visited) - 1)]
    return len(lattice(shape[0], s)) * len(lattice(shape[1], s))
