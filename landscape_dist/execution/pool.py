"""The pool interface every execution backend implements, and the one implementation of it on
the backend-free :class:`~landscape_dist.execution.scheduler.Scheduler`.

A backend registered in :data:`landscape_dist.registry.BACKENDS` is a class with the
constructor ``(model_spec, data_spec, evaluation, cluster, quantities=("loss",), wait=True)``
whose instances are :class:`Pool`; :func:`landscape_dist.execution.pools.make_pool` picks it by
``cluster.backend``. Most backends subclass :class:`WorkerPool` and supply a small
:class:`~landscape_dist.execution.scheduler.Backend` adapter.
"""

from __future__ import annotations

import operator
from typing import Callable, Iterable, Protocol, runtime_checkable

import numpy as np

from ..config.schema import ClusterConfig
from ..core.quantities import QuantitySet
from .jobs import Job, ShardGather, shard_sizes
from .scheduler import DEPTH, Backend, Scheduler
from .sharing import ChoiceSharing
from .worker import active_quantities


@runtime_checkable
class Pool(Protocol):
    """Workers, each a :class:`~landscape_dist.execution.worker.LandscapeWorker` holding a
    model replica and (a shard of) the data, evaluating jobs handed out by the pool."""

    names: tuple[str, ...]
    """The quantity names results carry now (those selected, per dataset where several)."""
    quantities: QuantitySet
    """The quantities in use: their parts and how shards combine them."""
    sizes: dict[str, list[int]]
    """Examples by dataset ('' for the only one), as lists over shards."""
    builds_at_once: bool
    """A class attribute: the workers are built in the constructor, in the caller's process, so
    there is nothing to start early (the sweep then builds the pool once its input is checked,
    and a bad input is named by the preparation rather than by a worker)."""

    @property
    def num_workers(self) -> int:
        """Workers in the pool (live or being replaced)."""

    @property
    def num_shards(self) -> int:
        """Data shards: every job is evaluated once per shard and the parts combined exactly."""

    def set_plane(self, centre, directions, non_trainable, non_trainable_directions=None,
                  recompute=None) -> None:
        """Make every worker evaluate on this plane: ``centre`` (size,), ``directions`` (k, size)
        float32, the non-trainable values at the centre (a list of arrays) and, optionally,
        their directions and the recompute rule (see ``LandscapeEvaluator.set_plane``)."""

    def select_quantities(self, names: tuple[str, ...]) -> None:
        """Compute only ``names`` (quantities the workers were built for) in the jobs to come;
        updates :attr:`names` and :attr:`quantities`. Raises ValueError for other names."""

    def run(self, jobs: Iterable[Job], on_result: Callable, quantities=None) -> None:
        """Evaluate ``jobs`` (consumed lazily); each result, a dict of arrays with one row per
        item, goes to ``on_result(key, result)`` once. ``quantities``: how to combine the
        shards' parts (default: those in use; ``PRODUCTS`` for HVP jobs). Raises
        :class:`~landscape_dist.errors.TileError` when a job cannot be completed."""

    def run_batches(self, jobs: Iterable[Job], on_results: Callable, quantities=None) -> None:
        """As :meth:`run`, the results that come in together handed over together:
        ``on_results([(key, result), ...])``, each job once (the sweep journals a batch with
        one write)."""

    def choices(self) -> list[dict]:
        """Each live worker's evaluation strategy, by dataset ({} for one that did not answer)."""

    def call_beside(self, function, *args):
        """``function`` (importable by the workers) called with ``args`` by a worker beside the caller
        (one that has imported TensorFlow already); its value, or None where the backend
        cannot, meaning the caller makes the call itself."""

    def wait_ready(self) -> "Pool":
        """Wait until every worker has started; this pool. Raises what a worker refused."""

    def close(self) -> None:
        """End the workers; the pool is not used afterwards."""


def check_cluster(cluster) -> ClusterConfig:
    """``cluster`` if it is a :class:`ClusterConfig`; else a TypeError naming the parameter."""
    if not isinstance(cluster, ClusterConfig):
        raise TypeError(f"The 'cluster' parameter of a pool must be a ClusterConfig. "
                        f"Got {cluster!r} instead.")
    return cluster


class WorkerPool:
    """A :class:`Pool` on a :class:`~landscape_dist.execution.scheduler.Scheduler`: ``backend``
    starts ``num_workers`` workers (worker i holds shard i mod ``num_shards``) and the pool
    remembers the plane and the selected quantities, so that a replacement gets them before
    any job. Subclasses build the backend adapter and call ``__init__``.
    """

    builds_at_once = False

    def __init__(self, backend: Backend, cluster: ClusterConfig, num_workers: int,
                 num_shards: int, wait: bool = True, depth: int = DEPTH):
        self.backend = backend
        self.cluster = cluster
        self._plane = None
        self._selected = None
        self.scheduler = Scheduler(backend, cluster, num_workers, num_shards,
                                   prepare=self._prepare, depth=depth)
        self.sharing = ChoiceSharing(backend)  # one worker's strategy timings serve its identical peers
        self._ready = False
        if wait:
            self.wait_ready()

    def _prepare(self, handle) -> None:
        """A new worker gets the plane and the selected quantities before its first job."""
        if self._plane is not None:
            self.backend.send(handle, "set_plane", *self._plane)
        if self._selected is not None:
            self.backend.send(handle, "select_quantities", self._selected)

    def wait_ready(self) -> "WorkerPool":
        """Wait until every worker has started; this pool. Raises what a worker refused (bad
        model or data), or a TileError when one could not start; the pool is closed then."""
        if self._ready:
            return self
        try:
            infos = self.scheduler.wait_ready()
        except BaseException:
            self.close()
            raise
        self._ready = True
        self.quantities = infos[0]["quantities"]
        self.names = self.quantities.names
        self._described = infos[0]["described"]
        self.sizes = shard_sizes([infos[s]["sizes"] for s in range(self.num_shards)])
        return self

    @property
    def num_workers(self) -> int:
        return len(self.scheduler.handles)

    @property
    def num_shards(self) -> int:
        return self.scheduler.num_shards

    @property
    def info(self) -> dict:
        """Worker handle -> its ``ready()`` description (pid, node, ...), for started workers."""
        return self.scheduler.info

    @property
    def shard_of(self) -> dict:
        """Worker handle -> the data shard it holds."""
        return self.scheduler.shard_of

    @property
    def replacements(self) -> int:
        """Workers replaced since the pool started."""
        return self.scheduler.replacements

    def set_plane(self, centre, directions, non_trainable, non_trainable_directions=None,
                  recompute=None) -> None:
        """Share the plane with the workers once (Ray: the object store). Calls to one worker
        run in order, so no wait is needed: a worker's next job sees the plane."""
        share = self.backend.share
        self._plane = (share(np.asarray(centre, np.float32)),
                       share(np.asarray(directions, np.float32)),
                       share([np.asarray(v) for v in non_trainable]),
                       None if non_trainable_directions is None else share(
                           [[np.asarray(v) for v in d] for d in non_trainable_directions]),
                       recompute)
        for handle in self.scheduler.handles:
            self.backend.send(handle, "set_plane", *self._plane)

    def select_quantities(self, names: tuple[str, ...]) -> None:
        """Compute only ``names`` (quantities the workers were built for) in the jobs to come."""
        self.quantities = active_quantities(self._described, names)
        self.names = self.quantities.names
        self._selected = tuple(names)
        for handle in self.scheduler.handles:
            self.backend.send(handle, "select_quantities", self._selected)

    def choices(self) -> list[dict]:
        """Each live worker's evaluation strategy, by dataset (an empty dict for one that did
        not answer within a few seconds)."""
        futures = [self.backend.send(h, "choices") for h in self.scheduler.live]
        out = []
        for future in futures:
            try:
                out.append(self.backend.result(future, timeout=10.0))
            except Exception:  # noqa: BLE001 - a worker lost meanwhile reports nothing
                out.append({})
        return out

    def call_beside(self, function, *args):
        """None: this backend has no worker beside the caller; the caller makes the call."""
        return None

    def run(self, jobs: Iterable[Job], on_result: Callable, quantities=None) -> None:
        """Hand ``jobs`` to the workers until all are done; see :meth:`Pool.run`."""
        def each(batch):
            for key, result in batch:
                on_result(key, result)

        self.run_batches(jobs, each, quantities)

    def run_batches(self, jobs: Iterable[Job], on_results: Callable, quantities=None) -> None:
        """Hand ``jobs`` to the workers until all are done; see :meth:`Pool.run_batches`."""
        gather = ShardGather(quantities or self.quantities, self.sizes)
        # a sized iterable of jobs bounds the workers' tuning by the run's length
        self.sharing.expect(self.scheduler, operator.length_hint(jobs, 0) or None)
        self.scheduler.run(jobs, gather, self.sharing.wrap(self.scheduler, on_results))

    def close(self) -> None:
        """End the workers, after each has removed its temporary files."""
        self.scheduler.close()
