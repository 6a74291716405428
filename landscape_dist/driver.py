"""Pools of evaluators and the loop that hands them jobs: in-process, or Ray actors.

A job is ``(key, kind, items)``: evaluate ``items`` (plane coordinates or flat weight vectors) and
report the result to ``on_result(key, result)``. Ray pools take jobs from a queue as actors become
free, put a dead actor's job back on the queue and start a replacement.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import ClusterConfig, EvaluationConfig
from .models import DataSpec, ModelSpec
from .workers import LandscapeWorker

log = logging.getLogger(__name__)


class TileError(RuntimeError):
    """A job failed for a reason that retrying will not fix, or ran out of retries."""


@dataclass(frozen=True)
class Job:
    key: object
    kind: str  # "coords" or "weights"
    items: np.ndarray


class InProcessPool:
    """Evaluates jobs one after another in this process (tests, debugging, tiny grids)."""

    def __init__(self, model_spec: ModelSpec, data_spec: DataSpec, evaluation: EvaluationConfig):
        self.worker = LandscapeWorker(model_spec, data_spec, evaluation)  # this process's threads
        self.names = self.worker.evaluator.names

    def set_plane(self, centre, directions, non_trainable) -> None:
        self.worker.set_plane(centre, directions, non_trainable)

    def run(self, jobs, on_result: Callable) -> None:
        for job in jobs:
            on_result(job.key, self.worker.evaluate(job.kind, job.items))

    def close(self) -> None:
        pass


class RayPool:
    """``num_workers`` Ray actors, each a :class:`LandscapeWorker`; replaces actors that die."""

    def __init__(self, model_spec: ModelSpec, data_spec: DataSpec, evaluation: EvaluationConfig,
                 cluster: ClusterConfig, runtime_env: dict | None = None):
        import ray

        self._ray = ray
        self.cluster = cluster
        env_vars = dict((runtime_env or {}).get("env_vars", {}))
        if cluster.gpus_per_worker == 0:
            env_vars.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU actors must not grab a GPU
        self._actor_class = ray.remote(LandscapeWorker).options(
            num_cpus=cluster.cpus_per_worker, num_gpus=cluster.gpus_per_worker,
            runtime_env={**(runtime_env or {}), "env_vars": env_vars})
        self._args = (ray.put(model_spec), data_spec, evaluation, cluster.threads_per_worker,
                      cluster.gpus_per_worker > 0)
        self._plane = None
        _check_free(cluster)
        self.actors = [self._new_actor() for _ in range(cluster.num_workers)]
        infos = ray.get([a.ready.remote() for a in self.actors])
        self.names = infos[0]["names"]
        self.replacements = 0

    def _new_actor(self):
        return self._actor_class.remote(*self._args)

    def set_plane(self, centre, directions, non_trainable) -> None:
        """Put the plane into the object store once; every actor reads it from there."""
        ray = self._ray
        self._plane = (ray.put(np.asarray(centre, np.float32)),
                       ray.put(np.asarray(directions, np.float32)),
                       ray.put([np.asarray(v) for v in non_trainable]))
        ray.get([a.set_plane.remote(*self._plane) for a in self.actors])

    def _replace(self, dead):
        ray = self._ray
        try:
            ray.kill(dead)  # its CPUs go back to the cluster before the replacement asks for them
        except Exception:  # noqa: BLE001 - the handle of a dead actor may already be gone
            pass
        actor = self._new_actor()
        self.actors = [actor if a is dead else a for a in self.actors]
        self.replacements += 1
        if self._plane is not None:
            actor.set_plane.remote(*self._plane)
        return actor, actor.ready.remote()

    def run(self, jobs, on_result: Callable) -> None:
        """Hand jobs to free actors until all are done; results go to ``on_result(key, result)``."""
        ray = self._ray
        from ray.exceptions import RayActorError, RayTaskError

        queue = collections.deque(jobs)
        retries: dict = collections.Counter()
        idle = list(self.actors)
        in_flight: dict = {}  # result ref -> (actor, job or None while the actor starts)
        while queue or any(job is not None for _, job in in_flight.values()):
            while idle and queue:
                actor, job = idle.pop(), queue.popleft()
                in_flight[actor.evaluate.remote(job.kind, job.items)] = (actor, job)
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in done:
                actor, job = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except RayTaskError as err:
                    if isinstance(err, RayActorError) and job is not None:
                        self._requeue(job, actor, retries, queue, in_flight, err)
                        continue
                    what = f"job {job.key}" if job is not None else "a starting worker"
                    raise TileError(f"Evaluating {what} failed in user code:\n{err}") from None
                except RayActorError as err:
                    if job is None:
                        raise TileError(f"A replacement worker failed to start: {err}") from None
                    self._requeue(job, actor, retries, queue, in_flight, err)
                    continue
                if job is not None:
                    on_result(job.key, result)
                idle.append(actor)

    def _requeue(self, job, actor, retries, queue, in_flight, err):
        if job is not None:
            retries[job.key] += 1
            if retries[job.key] > self.cluster.max_tile_retries:
                raise TileError(f"Job {job.key} lost its worker {retries[job.key]} times "
                                f"(cluster.max_tile_retries={self.cluster.max_tile_retries}); "
                                f"last error: {type(err).__name__}") from None
            queue.appendleft(job)
        log.warning("a worker died (%s); starting a replacement", type(err).__name__)
        new, ready_ref = self._replace(actor)
        in_flight[ready_ref] = (new, None)

    def close(self) -> None:
        for actor in self.actors:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        self.actors = []


def connect_ray(address: str | None = None, timeout_s: float = 60.0) -> None:
    """Join the Ray cluster at ``address``, or start a fresh local one (no-op if connected)."""
    import ray

    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(address="local", **kwargs)  # never joins a stale cluster left by a killed driver


def _check_free(cluster: ClusterConfig, wait_s: float = 15.0) -> None:
    """Refuse to start actors that would wait forever for CPUs or GPUs held by others.

    Waits up to ``wait_s`` for resources of just-killed actors to come back first.
    """
    import ray

    need_cpu = cluster.num_workers * cluster.cpus_per_worker
    need_gpu = cluster.num_workers * cluster.gpus_per_worker
    deadline = time.monotonic() + wait_s
    while True:
        free = ray.available_resources()
        enough = (need_cpu <= free.get("CPU", 0.0) + 1e-9 and need_gpu <= free.get("GPU", 0.0) + 1e-9)
        if enough or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not enough:
        raise ValueError(f"The 'cluster.num_workers' setting asks for {cluster.num_workers} workers "
                         f"({need_cpu:g} CPUs, {need_gpu:g} GPUs), but only {free.get('CPU', 0.0):g} "
                         f"CPUs and {free.get('GPU', 0.0):g} GPUs of the Ray cluster are free. "
                         f"Close other pools or lower cluster.num_workers.")


def check_resources(cluster: ClusterConfig) -> None:
    """Refuse a pool the connected Ray cluster cannot hold (actors would wait forever)."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    need_cpu = cluster.num_workers * cluster.cpus_per_worker
    need_gpu = cluster.num_workers * cluster.gpus_per_worker
    if need_gpu > gpus:
        raise ValueError(f"The 'cluster.gpus_per_worker' setting asks for {need_gpu:g} GPUs in all "
                         f"({cluster.num_workers} workers x {cluster.gpus_per_worker:g}), but the Ray "
                         f"cluster has {gpus:g}. Lower cluster.num_workers or cluster.gpus_per_worker.")
    if need_cpu > cpus:
        raise ValueError(f"The 'cluster.num_workers' setting asks for {need_cpu:g} CPUs in all "
                         f"({cluster.num_workers} workers x {cluster.cpus_per_worker:g}), but the Ray "
                         f"cluster has {cpus:g}. Lower cluster.num_workers or cluster.cpus_per_worker.")
