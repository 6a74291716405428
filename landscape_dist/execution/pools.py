"""Choosing the execution backend: the one place that turns ``cluster.backend`` into a pool."""

from __future__ import annotations

from ..config.schema import ClusterConfig, EvaluationConfig
from ..model.quantities import DEFAULT_QUANTITIES
from ..registry import BACKENDS
from .pool import Pool


def make_pool(cluster: ClusterConfig, model_spec, data_spec, evaluation: EvaluationConfig,
              quantities: tuple[str, ...] = DEFAULT_QUANTITIES, wait: bool = True) -> Pool:
    """A :class:`Pool` of the backend ``cluster.backend`` names in
    :data:`~landscape_dist.registry.BACKENDS` (``ray``, ``local`` or one registered), its
    workers built from ``model_spec`` and ``data_spec`` (a spec or a dict of them by dataset
    name) and computing ``quantities``. ``wait=False``: return while the workers start
    (:meth:`Pool.wait_ready` waits for them)."""
    backend = BACKENDS[cluster.backend]
    return backend(model_spec, data_spec, evaluation, cluster, quantities=tuple(quantities),
                   wait=wait)
