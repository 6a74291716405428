"""The library functions behind the CLI: ``train``, ``sweep``, ``plot`` and ``run``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

from .callbacks import LivePreview, ProgressBar, SweepCallback
from .config import Config
from .driver import InProcessPool, Job, RayPool, check_resources, connect_ray
from .grid import split_tiles
from .journal import TileJournal
from .layout import WeightLayout
from .models import DataSpec, ModelSpec, load_centre
from .plane import build_plane, resolve_axes
from .projection import off_plane_fraction, project_path
from .surface import SurfaceWriter
from .trajectory import read_trajectory
from .training import train

__all__ = ["train", "sweep", "plot", "run", "package_versions"]

_PATH_CHUNK = 64  # recorded checkpoints per path job
_DIGEST_LIMIT = 1 << 30  # files larger than this are fingerprinted by size and mtime only

log = logging.getLogger("landscape_dist")


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


def _data_spec(config: Config) -> DataSpec:
    source = config.data.source
    if os.path.exists(source):  # workers may run elsewhere: give them an absolute path
        source = str(Path(source).resolve())
    return DataSpec(source, num_shards=config.data.shards)


def _centre_path(config: Config, out: Path) -> Path | None:
    if config.model.centre:
        return Path(config.model.centre)
    trained = out / "model.keras"
    return trained if trained.is_file() else None


def _trajectory(out: Path, layout: WeightLayout, needed: bool):
    path = out / "trajectory.h5"
    if not path.is_file():
        if needed:
            raise ValueError(f"A 'pca' slice needs the training path '{path}', which does not exist. "
                             f"Run 'landscape-dist train' (or 'run') with the same --out first.")
        return None
    traj = read_trajectory(path)
    if traj.layout.shapes != layout.shapes:
        raise ValueError(f"The trajectory '{path}' was recorded from another architecture "
                         f"({len(traj.layout.shapes)} tensors, {traj.layout.size} weights) than "
                         f"'model.source' ({len(layout.shapes)} tensors, {layout.size} weights). "
                         f"Train this model again with the same --out.")
    return traj


def _writable_dir(out: Path, create: bool = True) -> None:
    """Refuse an output directory that cannot be created or written; create it if ``create``."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"The output directory '{out}' cannot be created: '{existing}' is a file. "
                         f"Give another --out.")
    if not os.access(existing, os.W_OK):
        raise ValueError(f"The output directory '{out}' is not writable ('{existing}' does not "
                         f"allow it). Give a writable --out.")
    if create:
        out.mkdir(parents=True, exist_ok=True)


def _file_digest(path) -> str | None:
    """sha256 of a file's bytes (size and mtime for very large files); None if not a file."""
    path = Path(path)
    if not path.is_file():
        return None
    stat = path.stat()
    if stat.st_size > _DIGEST_LIMIT:
        return f"size={stat.st_size},mtime={stat.st_mtime_ns}"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(config: Config, model_spec: ModelSpec, data_spec: DataSpec, centre_file,
                 trajectory_file) -> dict:
    """What the grid values depend on; a resumed sweep must match it exactly."""
    d = config.to_dict()
    model_file = hashlib.sha256(model_spec.payload).hexdigest() if model_spec.payload else None
    return {
        "model": {"source": d["model"]["source"], "file": model_file,
                  "centre": str(centre_file) if centre_file else None,
                  "centre_file": _file_digest(centre_file) if centre_file else None},
        "data": {"source": d["data"]["source"], "file": _file_digest(data_spec.source)},
        "trajectory": _file_digest(trajectory_file) if trajectory_file else None,
        "train": d["train"],  # a resumed 'run' keeps its trained model: refuse other training
        "slices": [{"name": sl["name"], "directions": sl["directions"], "grid": sl["grid"]}
                   for sl in d["slices"]],
    }


def _plane_digest(plane) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(plane.centre, np.float32).tobytes())
    digest.update(np.ascontiguousarray(plane.directions, np.float32).tobytes())
    return digest.hexdigest()


def sweep(config: Config, out: str | Path, *, pool=None, callbacks: list[SweepCallback] | None = None,
          overwrite: bool = False, progress: bool = True, in_process: bool = False) -> dict:
    """Evaluate every slice of ``config`` and write ``out/surface.h5``.

    The centre is ``model.centre`` if set, else ``out/model.keras`` from ``train`` if present, else
    the model source's own weights. ``pool`` (an :class:`InProcessPool` or :class:`RayPool`) is
    created from ``config.cluster`` when not given (``in_process=True``: no Ray). Returns a summary
    dict per slice (points, seconds, points/s, non-finite count, cosine, explained variance).

    Finished tiles go to ``out/surface.h5.journal`` as they arrive; running the same sweep again
    after an interruption (even SIGKILL) computes only the tiles the journal lacks. A journal
    from a different configuration is refused unless ``overwrite``. ``surface.h5`` appears, whole,
    only when every slice is done.
    """
    out = Path(out)
    target = out / "surface.h5"
    if target.exists() and not overwrite:
        raise ValueError(f"The surface file '{target}' already exists. Pass --overwrite to replace "
                         f"it, or give another --out.")
    _writable_dir(out, create=False)  # created once the input has been checked
    model_spec = ModelSpec.from_source(config.model.source, config.model.unsafe_deserialization)
    data_spec = _data_spec(config)
    model = model_spec.build()
    centre_file = _centre_path(config, out)
    if centre_file is not None:
        load_centre(model, centre_file)
    layout = WeightLayout.from_variables(model.trainable_variables)
    centre = layout.flatten([v.numpy() for v in model.trainable_variables])
    non_trainable = [v.numpy() for v in model.non_trainable_variables]
    needs_path = any(s.directions.kind == "pca" for s in config.slices)
    traj = _trajectory(out, layout, needs_path)
    path_weights = traj.weights if traj is not None else None
    planes = {}  # built first: bad directions or a short path fail before anything is written
    for slice_cfg in config.slices:
        plane = build_plane(slice_cfg, centre, layout, path_weights)
        planes[slice_cfg.name] = (plane, *resolve_axes(slice_cfg, plane, path_weights))
    fingerprint = _fingerprint(config, model_spec, data_spec, centre_file,
                               out / "trajectory.h5" if traj is not None else None)
    journal_path = out / "surface.h5.journal"
    # refuse another configuration early, before workers start
    checked = None if overwrite else TileJournal.check(journal_path, fingerprint)

    own_pool = pool is None
    writer = journal = None
    try:
        if own_pool:
            if in_process:
                pool = InProcessPool(model_spec, data_spec, config.evaluation)
            else:
                connect_ray(config.cluster.address)
                check_resources(config.cluster)
                pool = RayPool(model_spec, data_spec, config.evaluation, config.cluster)
        _writable_dir(out)
        journal = TileJournal.open(journal_path, fingerprint, resume=not overwrite, checked=checked)
        callbacks = list(callbacks or []) + ([ProgressBar()] if progress else [])
        if config.plot.preview_every_s:
            grids = {name: (xs, ys) for name, (_, xs, ys) in planes.items()}
            callbacks.append(LivePreview(out, grids, config.plot.preview_every_s))
        summary = {"slices": {}, "centre": str(centre_file) if centre_file else "source weights"}
        partial = out / "surface.h5.partial"
        writer = SurfaceWriter(partial, config.to_dict(), package_versions())
        for slice_cfg in config.slices:
            summary["slices"][slice_cfg.name] = _sweep_slice(
                slice_cfg, planes[slice_cfg.name], pool, writer, journal, layout, non_trainable,
                traj, path_weights, callbacks)
        writer.close()
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
    return summary


def _sweep_slice(slice_cfg, prepared, pool, writer, journal, layout, non_trainable, traj,
                 path_weights, callbacks):
    name = slice_cfg.name
    plane, xs, ys = prepared
    digest = _plane_digest(plane)
    earlier = journal.resumed("plane", name)
    if earlier and earlier[""] != digest:
        raise ValueError(f"The plane of slice '{name}' differs from the one of the unfinished sweep "
                         f"in '{journal.path.parent}' (the centre weights or the training path "
                         f"changed). Pass --overwrite to start again, or give another --out.")
    if not earlier:
        journal.append("plane", name, "", digest)
    pool.set_plane(plane.centre, plane.directions, non_trainable)
    slice_writer = writer.add_slice(name, xs, ys, pool.names, plane.meta, plane.centre,
                                    plane.directions, layout, non_trainable)
    tiles = split_tiles(slice_cfg.grid.shape, slice_cfg.grid.tile, slice_cfg.grid.order)
    by_index = {t.index: t for t in tiles}
    n_points = sum(t.size for t in tiles)
    nonfinite = {"count": 0}
    resumed = {k: v for k, v in journal.resumed("tile", name).items() if k in by_index}
    todo = [t for t in tiles if t.index not in resumed]
    computed = sum(t.size for t in todo)
    for cb in callbacks:
        cb.on_slice_begin(name, computed)
    for key, result in resumed.items():
        slice_writer.write_tile(by_index[key], result)
        nonfinite["count"] += int(np.sum(~np.isfinite(result["loss"])))
        for cb in callbacks:
            cb.on_tile_resumed(name, by_index[key], result)
    if resumed:
        log.info("slice '%s': %d of %d tiles already done (resumed from %s); computing %d",
                 name, len(resumed), len(tiles), journal.path.name, len(todo))

    def on_tile(key, result):
        tile = by_index[key]
        journal.append("tile", name, key, result)  # on disk before the surface file sees it
        slice_writer.write_tile(tile, result)
        nonfinite["count"] += int(np.sum(~np.isfinite(result["loss"])))
        for cb in callbacks:
            cb.on_tile_end(name, tile, result)

    t0 = time.perf_counter()
    pool.run((Job(t.index, "coords", t.points(xs, ys)) for t in todo), on_tile)
    seconds = time.perf_counter() - t0
    if nonfinite["count"]:
        log.warning("slice '%s': %d of %d points have a NaN or infinite loss (kept in the file, "
                    "masked in the figures)", name, nonfinite["count"], n_points)
    info = {"points": n_points, "tiles": len(tiles), "tiles_resumed": len(resumed),
            "tiles_computed": len(todo), "seconds": round(seconds, 3),
            "points_per_s": round(computed / seconds, 1) if seconds > 0 and computed else None,
            "nonfinite_points": nonfinite["count"], **{k: plane.meta[k] for k in
                                                        ("kind", "cosine", "explained_variance_ratio")
                                                        if k in plane.meta}}
    if traj is not None:
        coords, residual, relative = project_path(path_weights, plane.centre, plane.directions)
        distance = np.linalg.norm(path_weights.astype(np.float64) - plane.centre, axis=1)
        values = _evaluate_path(pool, path_weights)
        slice_writer.write_path(coords, residual, relative, distance, traj.step, traj.epoch, values)
        info["path_off_plane_fraction"] = round(off_plane_fraction(residual, distance), 4)
    for cb in callbacks:
        cb.on_slice_end(slice_cfg.name, info)
    return info


def _evaluate_path(pool, weights: np.ndarray) -> dict:
    """True loss and metrics at every recorded checkpoint, computed by the pool's workers."""
    chunks = {}
    jobs = [Job(i, "weights", weights[i:i + _PATH_CHUNK]) for i in range(0, len(weights), _PATH_CHUNK)]
    pool.run(jobs, lambda key, result: chunks.__setitem__(key, result))
    return {name: np.concatenate([chunks[k][name] for k in sorted(chunks)]) for name in pool.names}


def plot(surface: str | Path, out: str | Path | None = None, config: Config | None = None) -> list[str]:
    """Draw every slice of a surface file; returns the image paths (next to the file by default)."""
    from .plotting import plot_surface_file

    surface = Path(surface)
    out = Path(out) if out is not None else surface.parent
    _writable_dir(out)
    return plot_surface_file(surface, out, (config or Config()).plot)


def run(config: Config, out: str | Path, *, overwrite: bool = False, progress: bool = True,
        in_process: bool = False) -> dict:
    """Train with a recorded path, sweep every slice, draw the figures. Returns a summary."""
    out = Path(out)
    if (out / "surface.h5").exists() and not overwrite:
        raise ValueError(f"The surface file '{out / 'surface.h5'}' already exists. Pass --overwrite "
                         f"to replace it, or give another --out.")
    _writable_dir(out)
    t0 = time.perf_counter()
    trained = (out / "trajectory.h5").is_file() and (out / "model.keras").is_file()
    if not overwrite and trained and (out / "surface.h5.journal").is_file():
        # An interrupted run: keep the trained model and path the unfinished sweep was made from.
        log.info("resuming the unfinished run in %s (training skipped)", out)
        summary = {"train": {"resumed": True}}
    else:
        summary = {"train": train(config, out)}
        summary["train"]["seconds"] = round(time.perf_counter() - t0, 2)
    summary["sweep"] = sweep(config, out, overwrite=overwrite, progress=progress, in_process=in_process)
    summary["images"] = plot(out / "surface.h5", out, config)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
