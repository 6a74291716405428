"""``run``: train with a recorded path, sweep every slice, compute the curvature at the centre
and the sharpness along training when asked, draw the figures."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..config.loading import as_config
from ..config.schema import Config
from ..config.words import SETTING_WORDS
from ..errors import in_terms
from ..model.runtime import import_tensorflow_quietly
from ..store.lock import writes_into
from ..store.outdir import check_writable, refuse_existing_surface
from ..store.summary import write_summary
from ..sweeping.pools import start_pool
from .curvature import curvature
from .plot import plot
from .sharpness import sharpness
from .sweep import sweep
from .train import train

log = logging.getLogger("landscape_dist")


def _train_beside_start(config: Config, out: Path, overwrite: bool, in_process: bool):
    """Train while the sweep's workers start (TensorFlow, model, data); returns the training
    summary and the starting pool (None for one that runs in this process)."""
    t0 = time.perf_counter()
    started = start_pool(config, in_process)
    try:
        import_tensorflow_quietly()  # after the pool's start, beside the workers' start
        summary = train(config, out, overwrite=overwrite)
    except BaseException:
        if started is not None:
            started.close()
        raise
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary, started


@writes_into("run")
def run(config: Config | str | Path, out: str | Path, *, overwrite: bool = False, progress: bool = True,
        in_process: bool = False) -> dict:
    """Train with a recorded path, sweep every slice, draw the figures (``config``: a
    :class:`Config`, or the path of a YAML file). Returns a summary, also
    written to ``out/summary.json``."""
    out, config = Path(out), as_config(config)
    with in_terms(SETTING_WORDS):
        refuse_existing_surface(out, overwrite)
        check_writable(out)
    t0 = time.perf_counter()
    trained = (out / "trajectory.h5").is_file() and (out / "model.keras").is_file()
    if not overwrite and trained and (out / "surface.h5.journal").is_file():
        # An interrupted run: keep the trained model and path the unfinished sweep was made from.
        log.info("resuming the unfinished run in %s (training skipped)", out)
        summary, started = {"train": {"resumed": True}}, None
    else:
        trained_summary, started = _train_beside_start(config, out, overwrite, in_process)
        summary = {"train": trained_summary}
    summary["sweep"] = sweep(config, out, overwrite=overwrite, progress=progress,
                             in_process=in_process, started=started)
    if config.curvature is not None:  # the Hessian at the centre, when the section is given
        summary["curvature"] = curvature(config, out, in_process=in_process, overwrite=True,
                                         write_summary=False)
    if config.sharpness is not None:  # the sharpness along training, when the section is given
        summary["sharpness"] = sharpness(config, out, in_process=in_process, overwrite=True,
                                         write_summary=False)
    summary["images"] = plot(out / "surface.h5", out, config)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    write_summary(out / "summary.json", summary)
    return summary
