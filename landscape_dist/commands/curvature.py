"""``curvature``: the Hessian of the grid's loss at the centre, from products the workers compute.

The driver runs Lanczos (:mod:`landscape_dist.core.curvature`); every product is a job for the
pool (:class:`~landscape_dist.execution.products.PoolHessian`), the vectors of one step split
across the workers, the shards of the data combined exactly. Written to ``OUT/curvature.h5`` and
the ``curvature`` entry of ``OUT/summary.json``, with the settings, seeds, iterations and
product counts.

With ``curvature.flatness`` it also measures the flatness at the centre
(:mod:`landscape_dist.core.flatness`: epsilon-sharpness, adaptive sharpness, PAC-Bayes flatness),
from the loss and its gradient at any weights, computed by the pool as well
(:class:`~landscape_dist.execution.products.PoolGradient`,
:class:`~landscape_dist.execution.products.PoolLoss`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..config.loading import as_config
from ..config.schema import Config, CurvatureConfig
from ..config.words import SETTING_WORDS
from ..core.curvature import analyse, summarise
from ..core.flatness import measure_flatness
from ..errors import OutputError, in_terms
from ..execution.products import PoolGradient, PoolHessian, PoolLoss
from ..store.curvature import write_curvature
from ..store.lock import writes_into
from ..store.outdir import check_writable, refuse_directories
from ..store.provenance import package_versions
from ..store.summary import merge_summary
from ..sweeping.inputs import centre_inputs
from ..sweeping.pools import pool_for

log = logging.getLogger("landscape_dist")


@writes_into("curvature")
def curvature(config: Config | str | Path, out: str | Path, *, pool=None,
              in_process: bool = False, overwrite: bool = False,
              write_summary: bool = True) -> dict:
    """Compute the Hessian's spectrum at the centre (see the module docstring) on ``pool`` (built
    from ``config.cluster`` when not given; ``config`` a Config or the path of a YAML file);
    write ``out/curvature.h5``, the density figure and (``write_summary``) the ``curvature``
    entry of ``out/summary.json``; return the summary. The centre is found as
    :func:`~landscape_dist.commands.sweep.sweep` finds it. Refuses to replace an existing
    ``curvature.h5`` unless ``overwrite``."""
    from ..figures.curvature import plot_density  # matplotlib: only once it draws

    out, config = Path(out), as_config(config)
    cfg = config.curvature or CurvatureConfig()
    target = out / "curvature.h5"
    with in_terms(SETTING_WORDS):
        check_writable(out, create=False)
        refuse_directories({"curvature file": target,
                            "curvature figure": out / "curvature_density.png"})
        if target.exists() and not overwrite:
            raise OutputError(f"The curvature file '{target}' exists. Pass {{overwrite}} to "
                              f"replace it, or give another {{out}}.",
                              overwrite="overwrite=True", out="output directory")
        inputs = centre_inputs(config, out)
        cfg.check_for(inputs.layout.size)  # before the pool starts or anything is written
        own_pool = pool is None
        try:
            if own_pool:
                pool = pool_for(config, inputs.model_spec, inputs.data_spec, in_process)
            check_writable(out)
            pool.set_plane(inputs.centre, np.zeros((1, inputs.layout.size), np.float32),
                           inputs.non_trainable)
            operator = PoolHessian(pool)
            result = analyse(operator, inputs.layout, cfg)
            if cfg.flatness is not None:
                result["flatness"] = _flatness(pool, inputs.centre, cfg)
        finally:
            if own_pool and pool is not None:
                pool.close()
    summary = summarise(result, cfg, operator.products)
    meta = {"centre": str(inputs.centre_file) if inputs.centre_file else "source weights",
            "size": inputs.layout.size, "versions": package_versions(),
            "config": config.to_dict()}
    write_curvature(target, result, summary, meta)
    summary["file"] = str(target)
    summary["figure"] = str(plot_density(result, out / "curvature_density.png"))
    if write_summary:
        merge_summary(out / "summary.json", "curvature", summary)
    log.info("curvature: top eigenvalue %.6g, most negative %.6g, trace %.6g +- %.2g (%d products, "
             "%.1f s)", summary["top_eigenvalues"][0], summary["min_eigenvalue"],
             summary["trace"]["estimate"], summary["trace"]["stderr"], operator.products,
             result["seconds"])
    for name, entry in summary.get("flatness", {}).items():
        log.info("flatness: %s %s", name.replace("_", " "), entry["value"])
        if entry.get("diverged_evaluations"):  # the maximum is then over the finite points only
            log.warning("flatness: %s: %d of %d evaluated points gave a loss that is not finite; "
                        "the value is the best finite one (a smaller neighbourhood may help)",
                        name.replace("_", " "), entry["diverged_evaluations"],
                        entry["gradient_evaluations"])
    return summary


def _flatness(pool, centre, cfg: CurvatureConfig) -> dict:
    """The flatness measures at ``centre`` on the pool (whose plane is at the centre), with the
    rows of gradients and of losses they took and the time."""
    t0 = time.perf_counter()
    gradient, losses = PoolGradient(pool), PoolLoss(pool)
    measures = measure_flatness(gradient, losses, np.asarray(centre, np.float64), cfg.flatness)
    return {"measures": measures, "gradient_rows": gradient.rows, "loss_rows": losses.rows,
            "seconds": time.perf_counter() - t0}
