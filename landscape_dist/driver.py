"""Pools of evaluators and the loop that hands them jobs: in-process, or Ray actors.

A job is ``(key, kind, items)``: evaluate ``items`` (plane coordinates or flat weight vectors) and
report the result to ``on_result(key, result)``. Ray pools take jobs from a queue as actors become
free, put a dead actor's job back on the queue and start a replacement.
"""

from __future__ import annotations

import collections
import logging
import re
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import ClusterConfig, EvaluationConfig
from .models import DataSpec, ModelSpec
from .evaluator import combine_shards
from .workers import LandscapeWorker

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in Ray's error text
_DEPTH = 2  # jobs in flight per actor: one running, one queued behind it
_START_TIMEOUT_S = 300.0  # how long a replacement may take to start when no worker is left


def _last_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


class TileError(RuntimeError):
    """A job failed for a reason that retrying will not fix, or ran out of retries."""


@dataclass(frozen=True)
class Job:
    key: object
    kind: str  # "coords" or "weights"
    items: np.ndarray


class InProcessPool:
    """Evaluates jobs one after another in this process (tests, debugging, tiny grids); with
    ``data.shards`` > 1, one evaluator per shard, combined exactly."""

    def __init__(self, model_spec: ModelSpec, data_spec: DataSpec, evaluation: EvaluationConfig):
        shards = range(data_spec.num_shards)
        # this process's own threads
        self.workers = [LandscapeWorker(model_spec, data_spec, evaluation, shard=s) for s in shards]
        self.sizes = [w.evaluator.n_examples for w in self.workers]
        self.names = self.workers[0].evaluator.names

    def set_plane(self, centre, directions, non_trainable) -> None:
        for worker in self.workers:
            worker.set_plane(centre, directions, non_trainable)

    def run(self, jobs, on_result: Callable) -> None:
        for job in jobs:
            parts = [w.evaluate(job.kind, job.items) for w in self.workers]
            on_result(job.key, combine_shards(parts, self.sizes))

    def close(self) -> None:
        pass


class RayPool:
    """``num_workers`` Ray actors, each a :class:`LandscapeWorker`; replaces actors that die.

    With ``data.shards`` = S > 1, actor i holds shard i mod S; every job is evaluated once per
    shard, by an actor of that shard, and the parts are combined exactly on the driver.
    """

    def __init__(self, model_spec: ModelSpec, data_spec: DataSpec, evaluation: EvaluationConfig,
                 cluster: ClusterConfig, runtime_env: dict | None = None):
        import ray

        self._ray = ray
        cluster = cluster.resolve(ray.cluster_resources())
        self.cluster = cluster
        self.num_shards = data_spec.num_shards
        if cluster.num_workers < self.num_shards:
            raise ValueError(f"The 'cluster.num_workers' setting is {cluster.num_workers}, fewer than "
                             f"data.shards={self.num_shards}: each shard needs a worker. Raise "
                             f"cluster.num_workers or lower data.shards.")
        env_vars = dict((runtime_env or {}).get("env_vars", {}))
        if cluster.gpus_per_worker == 0:
            env_vars.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU actors must not grab a GPU
        self._actor_class = ray.remote(LandscapeWorker).options(
            **actor_resources(cluster), runtime_env={**(runtime_env or {}), "env_vars": env_vars})
        self._args = (ray.put(model_spec), data_spec, evaluation, cluster.threads_per_worker,
                      cluster.gpus_per_worker > 0, True)
        self._plane = None
        _check_free(cluster)
        self.shard_of: dict = {}  # actor -> the shard it holds
        self.actors = [self._new_actor(i % self.num_shards) for i in range(cluster.num_workers)]
        try:
            infos = ray.get([a.ready.remote() for a in self.actors])
        except ray.exceptions.RayError as err:
            self.close()
            raise TileError(f"A worker failed to start: {_last_line(err)}") from None
        refused = next((info["error"] for info in infos if "error" in info), None)
        if refused is not None:
            self.close()
            raise ValueError(refused)
        self.names = infos[0]["names"]
        self.info = dict(zip(self.actors, infos))  # actor -> its ready() description
        self.sizes = [infos[s]["examples"] for s in range(self.num_shards)]  # examples per shard
        self._starting: dict = {}  # replacement actor -> (ready ref, start time)
        self.replacements = 0

    def _new_actor(self, shard: int):
        actor = self._actor_class.remote(*self._args, shard=shard)
        self.shard_of[actor] = shard
        return actor

    def set_plane(self, centre, directions, non_trainable) -> None:
        """Put the plane into the object store once; every actor reads it from there.

        Calls on one actor run in order, so no wait is needed: an actor's next job sees the plane.
        """
        ray = self._ray
        self._plane = (ray.put(np.asarray(centre, np.float32)),
                       ray.put(np.asarray(directions, np.float32)),
                       ray.put([np.asarray(v) for v in non_trainable]))
        for actor in self.actors:
            actor.set_plane.remote(*self._plane)

    def _replace(self, dead, err):
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
        self._starting[actor] = (actor.ready.remote(), time.monotonic())

    def run(self, jobs, on_result: Callable) -> None:
        """Hand jobs to actors until all are done; results go to ``on_result(key, result)``.

        ``jobs`` is consumed lazily. Each actor holds up to ``_DEPTH`` jobs (one running, the
        next queued behind it) so it never waits for the driver between jobs. The jobs of an
        actor that dies go back to the front of its shard's queue and one replacement is started;
        the others carry on meanwhile. Raises :class:`TileError` when a job fails in user code,
        loses its worker more than ``cluster.max_tile_retries`` times, or no worker is left.
        """
        ray = self._ray
        from ray.exceptions import RayActorError, RayTaskError

        shards = range(self.num_shards)
        pending = iter(jobs)
        queues = {s: collections.deque() for s in shards}  # (job, shard) still to hand out
        parts: dict = {}  # job key -> {shard: parts} until every shard has answered
        retries: dict = collections.Counter()
        load = {a: 0 for a in self.actors if a not in self._starting}  # live actors' jobs
        in_flight: dict = {}  # result ref -> (actor, job, shard)
        exhausted = False

        def next_job(shard):
            nonlocal exhausted
            if not queues[shard] and not exhausted:
                job = next(pending, None)
                if job is None:
                    exhausted = True
                else:
                    for s in shards:
                        queues[s].append(job)
            return queues[shard].popleft() if queues[shard] else None

        while True:
            for actor in sorted(load, key=load.get):  # least-loaded actors first
                shard = self.shard_of[actor]
                while load[actor] < _DEPTH:
                    job = next_job(shard)
                    if job is None:
                        break
                    in_flight[actor.evaluate.remote(job.kind, job.items)] = (actor, job, shard)
                    load[actor] += 1
            if not in_flight and exhausted and not any(queues.values()):
                return
            if not load and not self._starting:
                raise TileError("No worker is left to evaluate the remaining jobs.")
            starting = {ref: actor for actor, (ref, _) in self._starting.items()}
            done, _ = ray.wait(list(in_flight) + list(starting), num_returns=1, timeout=1.0)
            for ref in done:
                if ref in starting:  # a replacement finished starting (or failed to)
                    actor = starting[ref]
                    del self._starting[actor]
                    try:
                        self.info[actor] = ray.get(ref)
                        if "error" in self.info[actor]:
                            raise ValueError(self.info[actor]["error"])
                    except (ray.exceptions.RayError, ValueError) as err:
                        raise TileError(f"A replacement worker failed to start: "
                                        f"{_last_line(err)}") from None
                    load[actor] = 0
                    continue
                actor, job, shard = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except RayActorError as err:
                    self._lost((job.key, shard), retries, err)
                    queues[shard].appendleft(job)
                    if actor in load:
                        load.pop(actor)
                        self._replace(actor, err)
                    continue
                except RayTaskError as err:
                    raise TileError(f"Evaluating job {job.key} failed in user code:\n"
                                    f"{_ANSI.sub('', str(err))}") from None
                if actor in load:
                    load[actor] -= 1
                got = parts.setdefault(job.key, {})
                got[shard] = result
                if len(got) == self.num_shards:
                    del parts[job.key]
                    on_result(job.key, combine_shards([got[s] for s in shards], self.sizes))
            self._check_starting(bool(load))

    def _check_starting(self, others_alive: bool) -> None:
        """Give up on replacements that cannot start when no other worker is left."""
        if others_alive or not self._starting:
            return
        waited = time.monotonic() - min(t for _, t in self._starting.values())
        if waited > _START_TIMEOUT_S:
            raise TileError(f"No worker is left and a replacement has waited {waited:.0f} s to "
                            f"start; the cluster may have lost the CPUs or GPUs it needs "
                            f"(cluster.cpus_per_worker={self.cluster.cpus_per_worker:g}, "
                            f"cluster.gpus_per_worker={self.cluster.gpus_per_worker:g}).")

    def _lost(self, key, retries, err) -> None:
        retries[key] += 1
        if retries[key] > self.cluster.max_tile_retries:
            job = key[0] if self.num_shards == 1 else f"{key[0]} (shard {key[1]})"
            raise TileError(f"Job {job} lost its worker {retries[key]} times "
                            f"(cluster.max_tile_retries={self.cluster.max_tile_retries}); "
                            f"last error: {type(err).__name__}") from None

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
        if address not in ("auto", "local"):
            _check_reachable(address, timeout_s)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"The 'cluster.address' setting is {address!r}, but Ray cannot join a "
                             f"cluster there ({reason}). Start one with 'ray start --head', or "
                             f"leave cluster.address unset for a local Ray.") from None
    else:
        ray.init(address="local", **kwargs)  # never joins a stale cluster left by a killed driver


def actor_resources(cluster: ClusterConfig) -> dict:
    """The Ray resource request of one worker actor."""
    return {"num_cpus": cluster.cpus_per_worker, "num_gpus": cluster.gpus_per_worker}


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast, with the setting named, when nothing listens at a 'host:port' address
    (Ray itself would keep retrying for minutes)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"The 'cluster.address' setting must be 'auto', 'local' or 'host:port'. "
                         f"Got {address!r} instead.")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout_s, 10.0)):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"The 'cluster.address' setting is {address!r}, but no Ray cluster answers "
                         f"there ({reason}). Start one with 'ray start --head' or give the address "
                         f"'ray status' prints on the head node.") from None


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
    cluster = cluster.resolve(total)
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
