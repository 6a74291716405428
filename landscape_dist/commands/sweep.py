"""``sweep``: evaluate every slice of a configuration on a pool and write the surface file.

Everything that can fail on bad input is prepared first (model, data, centre, path, planes, the
journal's fingerprint) while the pool starts, then the sweep writes. On a pool that can run a call
beside this process (Ray), a driver that has not imported TensorFlow has its first worker prepare
the planes with the TensorFlow that worker imports anyway (its errors, warnings and log messages
relayed), so that its own import does not compete with the workers' for the cores. Each slice is a
:class:`~landscape_dist.sweeping.slices.SliceSweep`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

from ..callbacks import CallbackList, ProgressBar, SweepCallback
from ..config.loading import as_config
from ..config.schema import Config
from ..config.words import SETTING_WORDS
from ..core.quantities import main_loss
from ..errors import in_terms
from ..figures.live import LivePreview
from ..store.journal import TileJournal
from ..store.lock import writes_into
from ..store.outdir import check_writable, refuse_existing_surface, set_aside_draft
from ..store.provenance import package_versions
from ..store.surface import SurfaceWriter
from ..sweeping.inputs import SweepInputs, build_deferred, prepare_portable
from ..sweeping.pools import pool_for, start_pool
from ..sweeping.slices import SliceSweep, seed_groups

__all__ = ["sweep", "final_config"]

log = logging.getLogger("landscape_dist")


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


def _prepare(config: Config, out: Path, early, journal_path: Path, overwrite: bool):
    """The sweep's inputs, prepared by a worker of the starting pool ``early`` where it can (see
    the module docstring), else here; their fingerprint, and the journal's check against it
    (None with ``overwrite``). Bad input closes ``early`` before it is raised."""
    try:
        inputs = None
        if early is not None and "tensorflow" not in sys.modules:
            inputs = early.call_beside(prepare_portable, config, out)
        if inputs is None:
            inputs = prepare_portable(config, out)
        fingerprint_ = inputs.fingerprint(config)
        checked = None if overwrite else TileJournal.check(journal_path, fingerprint_)
    except BaseException:
        if early is not None:
            early.close()
        raise
    return inputs, fingerprint_, checked


def _sweep_slices(config: Config, inputs: SweepInputs, out: Path, pool, journal: TileJournal,
                  hooks, partial: Path) -> dict:
    """Sweep every slice into ``partial``; returns the summary of each slice by name."""
    writer = SurfaceWriter(partial, config.to_dict(), package_versions())
    try:
        slices = {plan.name: SliceSweep(plan, writer, journal, hooks, inputs.non_trainable,
                                        config.plot).run(pool, inputs.trajectory, inputs.runs)
                  for plan in inputs.slices}
        writer.finish()
    finally:
        writer.close()
    return slices


@writes_into("sweep")
def sweep(config: Config | str | Path, out: str | Path, *, pool=None, callbacks: list[SweepCallback] | None = None,
          overwrite: bool = False, progress: bool = True, in_process: bool = False,
          started=None, final: bool = False) -> dict:
    """Evaluate every slice of ``config`` (a :class:`Config`, or the path of a YAML file) and
    write ``out/surface.h5``.

    The centre is ``model.centre`` if set, else ``out/model.keras`` from ``train`` if present, else
    the model source's own weights. ``pool`` (any :class:`~landscape_dist.execution.pool.Pool`)
    is created from ``config.cluster`` when not given (``in_process=True``: the local backend, no
    Ray). Returns a summary dict per slice (points, seconds, points/s, non-finite count, cosine,
    explained variance).

    Finished tiles go to ``out/surface.h5.journal`` as they arrive; running the same sweep again
    after an interruption (even SIGKILL) computes only the tiles the journal lacks. A journal
    from a different configuration is refused unless ``overwrite``. ``surface.h5`` appears, whole,
    only when every slice is done.

    ``started``: a pool from :func:`~landscape_dist.sweeping.pools.start_pool` whose workers are
    still starting (``run`` starts it before training); the sweep takes it over and closes it.
    ``final``: the sweep on every example after a draft on a subset (``evaluation.examples``):
    the draft's surface (or its unfinished journal) is set aside as ``surface_draft.h5`` first.
    """
    out, config = Path(out), as_config(config)
    if final:
        config = final_config(config, out)
    with in_terms(SETTING_WORDS):
        refuse_existing_surface(out, overwrite)
        check_writable(out, create=False)  # created once the input has been checked
        own_pool = pool is None
        # the workers start (TensorFlow, model, data) while the planes are prepared
        early = started or (start_pool(config, in_process) if own_pool else None)
        journal_path = out / "surface.h5.journal"
        inputs, fingerprint_, checked = _prepare(config, out, early, journal_path, overwrite)
        journal = None
        partial, target = out / "surface.h5.partial", out / "surface.h5"
        try:
            if own_pool:
                pool = early.wait_ready() if early is not None else pool_for(
                    config, inputs.model_spec, inputs.data_spec, in_process)
            check_writable(out)
            journal = TileJournal.open(journal_path, fingerprint_, resume=not overwrite, checked=checked)
            inputs = build_deferred(inputs, config, pool, journal)
            hooks = _callbacks(config, inputs, out, callbacks, progress, pool.names)
            summary = {"slices": _sweep_slices(config, inputs, out, pool, journal, hooks, partial),
                       "centre": str(inputs.centre_file) if inputs.centre_file else "source weights"}
            os.replace(partial, target)
        finally:
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
