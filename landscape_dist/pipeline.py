"""The library functions behind the CLI: ``train``, ``sweep``, ``plot`` and ``run``."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from .config.schema import Config
from .curvature import curvature
from .errors import in_terms
from .figures.formats import write_outputs
from .model import training
from .report import import_tensorflow_quietly
from .store.surface import check_surface
from .store.outdir import check_writable, refuse_existing_surface, refuse_retraining
from .sweep import SETTINGS, package_versions, start_pool, sweep

__all__ = ["train", "sweep", "plot", "run", "curvature", "package_versions"]

log = logging.getLogger("landscape_dist")


def train(config: Config, out: str | Path, verbose: int = 0, *, overwrite: bool = False) -> dict:
    """Train the configured model on its data, recording its path: ``out/trajectory.h5`` and
    ``out/model.keras`` (the final weights, the default centre). Returns a summary dict.

    Refuses to replace the model and path a surface in ``out`` was made from unless ``overwrite``.
    """
    out = Path(out)
    with in_terms(SETTINGS):
        check_writable(out, create=False)
        refuse_retraining(out, overwrite)
        return training.train(config, out, verbose)


def plot(surface: str | Path, out: str | Path | None = None, config: Config | None = None,
         formats: tuple[str, ...] | None = None) -> list[str]:
    """Draw every slice of a surface file in each of ``formats`` (default: ``config.plot.format``);
    returns the written paths (next to the surface file by default)."""
    surface = Path(surface)
    out = Path(out) if out is not None else surface.parent
    with in_terms(SETTINGS):
        check_writable(out, create=False)
        check_surface(surface)  # a file that is not a finished surface is refused before writing
        check_writable(out)
    return write_outputs(surface, out, (config or Config()).plot, formats)


def run(config: Config, out: str | Path, *, overwrite: bool = False, progress: bool = True,
        in_process: bool = False) -> dict:
    """Train with a recorded path, sweep every slice, draw the figures. Returns a summary."""
    out = Path(out)
    with in_terms(SETTINGS):
        refuse_existing_surface(out, overwrite)
        check_writable(out)
    t0 = time.perf_counter()
    trained = (out / "trajectory.h5").is_file() and (out / "model.keras").is_file()
    if not overwrite and trained and (out / "surface.h5.journal").is_file():
        # An interrupted run: keep the trained model and path the unfinished sweep was made from.
        log.info("resuming the unfinished run in %s (training skipped)", out)
        summary = {"train": {"resumed": True}}
        started = None
    else:
        # the sweep's Ray actors start (TensorFlow, model, data) while the model trains
        started = None if in_process else start_pool(config)
        try:
            import_tensorflow_quietly()  # after Ray's start, beside the actors' start
            summary = {"train": train(config, out, overwrite=overwrite)}
        except BaseException:
            if started is not None:
                started.close()
            raise
        summary["train"]["seconds"] = round(time.perf_counter() - t0, 2)
    summary["sweep"] = sweep(config, out, overwrite=overwrite, progress=progress,
                             in_process=in_process, started=started)
    if config.curvature is not None:  # the Hessian at the centre, when the section is given
        summary["curvature"] = curvature(config, out, in_process=in_process, overwrite=True,
                                         write_summary=False)
    summary["images"] = plot(out / "surface.h5", out, config)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    (out / "summary.json").write_text(to_json(summary))
    return summary


def json_safe(value):
    """``value`` with NaN and infinities as None (JSON has no such numbers), paths as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def to_json(summary) -> str:
    """A summary as strict JSON."""
    return json.dumps(json_safe(summary), indent=2, allow_nan=False)
