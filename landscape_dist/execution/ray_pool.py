"""The Ray pool: worker actors fed from a job queue, with dead actors' jobs re-queued and replaced.

Three concerns, kept apart: *dispatch* keeps every live actor holding ``_DEPTH`` jobs (one
running, one queued behind it, so no actor waits for the driver); *collection* takes finished
results, gathers the shards of each job and reports it; *replacement* puts a dead actor's jobs back
on the queue and starts another actor while the rest carry on.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import time
from typing import Callable, Iterable

import numpy as np

from ..config.schema import ClusterConfig, EvaluationConfig
from ..errors import LandscapeError, TileError
from ..model.quantities import DEFAULT_QUANTITIES
from ..model.sources import DataSpec, ModelSpec
from .cluster import actor_resources, check_resources, connect_ray, gpus_hidden
from .jobs import Job, JobQueue, ShardGather, shard_sizes
from .worker import LandscapeWorker, active_quantities

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in Ray's error text
_DEPTH = 2  # jobs in flight per actor: one running, one queued behind it
_START_TIMEOUT_S = 300.0  # how long a replacement may take to start when no worker is left


def _last_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def _refusal(info: dict) -> BaseException | None:
    error = info.get("error")
    if error is None:
        return None
    return error if isinstance(error, BaseException) else ValueError(str(error))


class RayPool:
    """``num_workers`` Ray actors, each a :class:`LandscapeWorker`; replaces actors that die.

    Joins the cluster at ``cluster.address`` unless Ray is already connected, and refuses a pool
    the cluster cannot hold. With ``data_spec.num_shards`` = S > 1, actor i holds shard i mod S;
    every job is evaluated once per shard, by an actor of that shard, and the parts are combined
    exactly on the driver.
    """

    def __init__(self, model_spec: ModelSpec, data_spec: DataSpec, evaluation: EvaluationConfig,
                 cluster: ClusterConfig, runtime_env: dict | None = None,
                 quantities: tuple[str, ...] = DEFAULT_QUANTITIES, wait: bool = True):
        """``wait=False``: return once the actors are asked for, while they start (their
        TensorFlow import, model and data); :meth:`wait_ready` then waits for them."""
        import ray

        self._ray = ray
        connect_ray(cluster.address, hide_gpus=cluster.gpus_per_worker == 0)
        first = next(iter(data_spec.values())) if isinstance(data_spec, dict) else data_spec
        self.num_shards = first.num_shards
        self.cluster = cluster = check_resources(cluster)
        if cluster.num_workers < self.num_shards:
            raise LandscapeError(f"The 'cluster.num_workers' setting is {cluster.num_workers}, fewer "
                                 f"than the {{shards}} ({self.num_shards}): each shard needs a worker. "
                                 f"Raise cluster.num_workers or use fewer shards.",
                                 shards="number of data shards")
        env_vars = dict((runtime_env or {}).get("env_vars", {}))
        if cluster.gpus_per_worker == 0 and not gpus_hidden():
            env_vars.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU actors must not grab a GPU
        env = {**(runtime_env or {}), **({"env_vars": env_vars} if env_vars else {})}
        # without an environment of their own, actors start on the workers Ray started ahead
        self._actor_class = ray.remote(LandscapeWorker).options(
            **actor_resources(cluster), **({"runtime_env": env} if env else {}))
        self._args = (ray.put(model_spec), data_spec, evaluation, cluster.threads_per_worker,
                      cluster.gpus_per_worker > 0, True)
        self._quantities_asked = tuple(quantities)
        self._plane = None
        self.shard_of: dict = {}  # actor -> the shard it holds
        self.actors = [self._new_actor(i % self.num_shards) for i in range(cluster.num_workers)]
        self._ready_refs = [a.ready.remote() for a in self.actors]
        if wait:
            self.wait_ready()

    def wait_ready(self) -> "RayPool":
        """Wait until every actor has started; raise what a worker refused (bad model or data)."""
        if self._ready_refs is None:
            return self
        ray = self._ray
        refs, self._ready_refs = self._ready_refs, None
        try:
            infos = ray.get(refs)
        except ray.exceptions.RayError as err:
            self.close()
            raise TileError(f"A worker failed to start: {_last_line(err)}") from None
        refused = next((_refusal(info) for info in infos if "error" in info), None)
        if refused is not None:
            self.close()
            raise refused
        self.quantities = infos[0]["quantities"]
        self.names = self.quantities.names
        self._described = infos[0]["described"]
        self._use = None
        self.info = dict(zip(self.actors, infos))  # actor -> its ready() description
        self.sizes = shard_sizes([infos[s]["sizes"] for s in range(self.num_shards)])
        self._starting: dict = {}  # replacement actor -> (ready ref, start time)
        self._load: dict = {}  # live actor -> jobs it holds
        self._in_flight: dict = {}  # result ref -> (actor, job, shard)
        self._retries = collections.Counter()  # (job key, shard) -> times its worker died
        self.replacements = 0
        return self

    def call_beside(self, target: str, *args):
        """``target`` (``'module:function'``) called with ``args`` by the first worker, in this
        process's working directory, its warnings and log records relayed here (see
        ``execution.relay``); None where that worker runs on another node or could not answer
        (the caller then makes the call itself). Returns once that worker has started."""
        ray = self._ray
        node = ray.get_runtime_context().get_node_id()
        try:
            reply = ray.get(self.actors[0].call.remote(target, args, os.getcwd(), node))
        except ray.exceptions.RayError:
            return None
        return None if reply is None else reply.deliver()

    def _new_actor(self, shard: int):
        actor = self._actor_class.remote(*self._args, shard=shard, quantities=self._quantities_asked)
        self.shard_of[actor] = shard
        return actor

    def set_plane(self, centre, directions, non_trainable, non_trainable_directions=None,
                  recompute=None) -> None:
        """Put the plane into the object store once; every actor reads it from there.

        Calls on one actor run in order, so no wait is needed: an actor's next job sees the plane.
        """
        ray = self._ray
        self._plane = (ray.put(np.asarray(centre, np.float32)),
                       ray.put(np.asarray(directions, np.float32)),
                       ray.put([np.asarray(v) for v in non_trainable]),
                       None if non_trainable_directions is None else ray.put(
                           [[np.asarray(v) for v in d] for d in non_trainable_directions]),
                       recompute)
        for actor in self.actors:
            actor.set_plane.remote(*self._plane)

    def use(self, quantities: tuple[str, ...]) -> None:
        """Compute only ``quantities`` (names the workers were built for) in the jobs to come."""
        self.quantities = active_quantities(self._described, quantities)
        self.names = self.quantities.names
        self._use = tuple(quantities)
        for actor in self.actors:
            actor.use.remote(self._use)

    def choices(self) -> list[dict]:
        """Each live worker's evaluation strategy, by dataset (an empty dict for one that did not
        answer within a few seconds)."""
        refs = [actor.choices.remote() for actor in self.actors if actor not in self._starting]
        out = []
        for ref in refs:
            try:
                out.append(self._ray.get(ref, timeout=10.0))
            except Exception:  # noqa: BLE001 - a worker lost meanwhile reports nothing
                out.append({})
        return out

    @property
    def num_workers(self) -> int:
        return len(self.actors)

    # ------------------------------------------------------------------ the loop

    def run(self, jobs: Iterable[Job], on_result: Callable, quantities=None) -> None:
        """Hand jobs to actors until all are done; results go to ``on_result(key, result)``.

        ``jobs`` is consumed lazily; ``quantities``: how to combine their shards' parts (default:
        those in use; :data:`PRODUCTS` for HVP jobs). Raises :class:`TileError` when a job fails in user code,
        loses its worker more than ``cluster.max_tile_retries`` times, or no worker is left.
        """
        queue = JobQueue(jobs, self.num_shards)
        gather = ShardGather(quantities or self.quantities, self.sizes)
        self._load = {a: 0 for a in self.actors if a not in self._starting}
        self._in_flight = {}
        self._retries.clear()
        while True:
            self._dispatch(queue)
            if not self._in_flight and queue.empty:
                return
            if not self._load and not self._starting:
                raise TileError("No worker is left to evaluate the remaining jobs.")
            starting = {ref: actor for actor, (ref, _) in self._starting.items()}
            done, _ = self._ray.wait(list(self._in_flight) + list(starting), num_returns=1,
                                     timeout=1.0)
            for ref in done:
                if ref in starting:
                    self._started(starting[ref], ref)
                else:
                    self._collect(ref, queue, gather, on_result)
            self._check_starting()

    def _dispatch(self, queue: JobQueue) -> None:
        """Fill every live actor up to ``_DEPTH`` jobs, least-loaded actors first."""
        for actor in sorted(self._load, key=self._load.get):
            shard = self.shard_of[actor]
            while self._load[actor] < _DEPTH:
                job = queue.take(shard)
                if job is None:
                    break
                self._in_flight[actor.evaluate.remote(job.kind, job.items)] = (actor, job, shard)
                self._load[actor] += 1

    def _collect(self, ref, queue: JobQueue, gather: ShardGather, on_result: Callable) -> None:
        """Take one finished result: report its job once every shard is in; on a dead actor,
        re-queue the job and replace the actor."""
        from ray.exceptions import RayActorError, RayTaskError

        actor, job, shard = self._in_flight.pop(ref)
        try:
            parts = self._ray.get(ref)
        except RayActorError as err:
            self._count_loss(job.key, shard, err)
            queue.put_back(job, shard)
            if actor in self._load:
                del self._load[actor]
                self._replace(actor, err)
            return
        except RayTaskError as err:
            raise TileError(f"Evaluating job {job.key} failed in user code:\n"
                            f"{_ANSI.sub('', str(err))}") from None
        if actor in self._load:
            self._load[actor] -= 1
        result = gather.add(job.key, shard, parts)
        if result is not None:
            on_result(job.key, result)

    # ------------------------------------------------------------------ replacement

    def _count_loss(self, key, shard: int, err) -> None:
        self._retries[(key, shard)] += 1
        lost = self._retries[(key, shard)]
        if lost > self.cluster.max_tile_retries:
            job = key if self.num_shards == 1 else f"{key} (shard {shard})"
            raise TileError(f"Job {job} lost its worker {lost} times "
                            f"(cluster.max_tile_retries={self.cluster.max_tile_retries}); "
                            f"last error: {type(err).__name__}") from None

    def _replace(self, dead, err) -> None:
        ray = self._ray
        log.warning("a worker died (%s); starting a replacement", type(err).__name__)
        try:
            ray.kill(dead)  # its CPUs go back to the cluster before the replacement asks for them
        except Exception:  # noqa: BLE001 - the handle of a dead actor may already be gone
            pass
        actor = self._new_actor(self.shard_of.pop(dead))
        self.actors = [actor if a is dead else a for a in self.actors]
        self.info.pop(dead, None)
        self.replacements += 1
        if self._plane is not None:
            actor.set_plane.remote(*self._plane)
        if self._use is not None:
            actor.use.remote(self._use)
        self._starting[actor] = (actor.ready.remote(), time.monotonic())

    def _started(self, actor, ref) -> None:
        """A replacement finished starting (or failed to): from now on it gets jobs."""
        del self._starting[actor]
        try:
            info = self._ray.get(ref)
        except self._ray.exceptions.RayError as err:
            raise TileError(f"A replacement worker failed to start: {_last_line(err)}") from None
        refused = _refusal(info)
        if refused is not None:
            raise TileError(f"A replacement worker failed to start: {refused}") from None
        self.info[actor] = info
        self._load[actor] = 0

    def _check_starting(self) -> None:
        """Give up on replacements that cannot start when no other worker is left."""
        if self._load or not self._starting:
            return
        waited = time.monotonic() - min(t for _, t in self._starting.values())
        if waited > _START_TIMEOUT_S:
            raise TileError(f"No worker is left and a replacement has waited {waited:.0f} s to "
                            f"start; the cluster may have lost the CPUs or GPUs it needs "
                            f"(cluster.cpus_per_worker={self.cluster.cpus_per_worker:g}, "
                            f"cluster.gpus_per_worker={self.cluster.gpus_per_worker:g}).")

    def close(self) -> None:
        """End the actors, after each has removed its temporary files (a few seconds at most)."""
        if self.actors:
            try:
                self._ray.get([a.close.remote() for a in self.actors], timeout=5.0)
            except Exception:  # noqa: BLE001 - a dead or busy actor is ended all the same
                pass
        for actor in self.actors:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        self.actors = []
