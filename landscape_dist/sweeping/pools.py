"""The pool a configuration asks for: its backend (``cluster.backend``, or in this process), its
workers built for every quantity of every slice."""

from __future__ import annotations

import dataclasses

from ..config.schema import Config
from ..execution.pools import make_pool
from ..model.sources import ModelSpec
from ..registry import BACKENDS
from .inputs import data_specs

LOCAL = "local"  # the backend that runs in this process (``--in-process``)


def slice_quantities(config: Config) -> tuple[str, ...]:
    """Every quantity some slice asks for, 'loss' first."""
    return tuple(dict.fromkeys(q for s in config.slices for q in s.quantities))


def backend_of(config: Config, in_process: bool = False) -> str:
    """The backend that runs ``config``'s workers: ``in_process`` is the shorthand for local."""
    return LOCAL if in_process else config.cluster.backend


def pool_for(config: Config, model_spec: ModelSpec, data_spec, in_process: bool = False,
             wait: bool = True):
    """The pool ``config.cluster`` describes. ``wait=False``: return while its workers start
    (see ``Pool.wait_ready``)."""
    cluster = dataclasses.replace(config.cluster, backend=backend_of(config, in_process))
    return make_pool(cluster, model_spec, data_spec, config.evaluation, slice_quantities(config),
                     wait=wait)


def start_pool(config: Config, in_process: bool = False):
    """The pool of ``config`` whose workers are still starting, or None for a backend that
    builds its workers at once (``Pool.builds_at_once``: it is built once the inputs are
    prepared, so that bad input is named by the preparation rather than by a worker)."""
    if BACKENDS[backend_of(config, in_process)].builds_at_once:
        return None
    model_spec = ModelSpec.from_source(config.model.source, config.model.unsafe_deserialization)
    return pool_for(config, model_spec, data_specs(config), in_process, wait=False)
