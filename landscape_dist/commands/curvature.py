"""``curvature``: the Hessian of the grid's loss at the centre, from products the workers compute.

The driver runs Lanczos (:mod:`landscape_dist.core.curvature`); every product is a job for the
pool (:class:`~landscape_dist.execution.products.PoolHessian`), the vectors of one step split
across the workers, the shards of the data combined exactly. Written to ``OUT/curvature.h5`` and
the ``curvature`` entry of ``OUT/summary.json``, with the settings, seeds, iterations and
product counts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config.schema import Config, CurvatureConfig
from ..config.words import SETTING_WORDS
from ..core.curvature import analyse, summarise
from ..errors import OutputError, in_terms
from ..execution.products import PoolHessian
from ..store.curvature import write_curvature
from ..store.lock import writes_into
from ..store.outdir import check_writable
from ..store.provenance import package_versions
from ..store.summary import merge_summary
from ..sweeping.inputs import centre_inputs
from ..sweeping.pools import pool_for

log = logging.getLogger("landscape_dist")


@writes_into("curvature")
def curvature(config: Config, out: str | Path, *, pool=None, in_process: bool = False,
              overwrite: bool = False, write_summary: bool = True) -> dict:
    """Compute the Hessian's spectrum at the centre (see the module docstring) on ``pool`` (built
    from ``config.cluster`` when not given); write ``out/curvature.h5``, the density figure and
    (``write_summary``) the ``curvature`` entry of ``out/summary.json``; return the summary. The
    centre is found as :func:`~landscape_dist.commands.sweep.sweep` finds it. Refuses to replace an
    existing ``curvature.h5`` unless ``overwrite``."""
    from ..figures.curvature import plot_density  # matplotlib: only once it draws

    out = Path(out)
    cfg = config.curvature or CurvatureConfig()
    target = out / "curvature.h5"
    with in_terms(SETTING_WORDS):
        check_writable(out, create=False)
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
    return summary
