"""The Ray pool: worker actors run by the scheduler (see ``execution.scheduler``); this module
holds only the Ray calls: starting actors, calling them, waiting, and ending lost ones."""

from __future__ import annotations

import os
import re

from ..config.schema import ClusterConfig, EvaluationConfig
from ..model.quantities import DEFAULT_QUANTITIES
from ..model.sources import DataSpec, ModelSpec
from ..registry import plugins
from .cluster import actor_resources, check_resources, connect_ray, gpus_hidden
from .pool import WorkerPool, check_cluster
from .scheduler import JobFailed, WorkerLost, check_workers
from .worker import LandscapeWorker

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in Ray's error text


class RayBackend:
    """Workers as Ray actors of ``actor_class`` built with ``args``; futures are object refs."""

    def __init__(self, actor_class, args: tuple, quantities: tuple[str, ...]):
        import ray

        self._ray = ray
        self._actor_class = actor_class
        self._args = args
        self._quantities = tuple(quantities)
        self._plugins = plugins()  # what was registered here reaches the actors

    def start(self, shard: int):
        return self._actor_class.remote(*self._args, shard=shard, quantities=self._quantities,
                                        plugins=self._plugins)

    def send(self, handle, method: str, *args):
        return getattr(handle, method).remote(*args)

    def wait(self, futures: list, timeout: float, num_returns: int = 1) -> list:
        done, _ = self._ray.wait(futures, num_returns=num_returns, timeout=timeout)
        return done

    def result(self, future, timeout: float | None = None):
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError

        try:
            return self._ray.get(future, timeout=timeout)
        except RayTaskError as err:  # an exception in user code, traceback included
            raise JobFailed(_ANSI.sub("", str(err))) from err
        except GetTimeoutError:
            raise
        except RayError as err:  # the actor died, its node was lost, or it could not start
            raise WorkerLost(str(err)) from err

    def discard(self, handle) -> None:
        try:
            self._ray.kill(handle)  # its CPUs go back to the cluster
        except Exception:  # noqa: BLE001 - the handle of a dead actor may already be gone
            pass

    def share(self, value):
        return self._ray.put(value)


def _actor_class(ray, cluster: ClusterConfig, runtime_env: dict | None):
    """``LandscapeWorker`` as a Ray actor class with the resources and environment asked for."""
    env_vars = dict((runtime_env or {}).get("env_vars", {}))
    if cluster.gpus_per_worker == 0 and not gpus_hidden():
        env_vars.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU actors must not grab a GPU
    env = {**(runtime_env or {}), **({"env_vars": env_vars} if env_vars else {})}
    # without an environment of their own, actors start on the workers Ray started ahead
    return ray.remote(LandscapeWorker).options(
        **actor_resources(cluster), **({"runtime_env": env} if env else {}))


class RayPool(WorkerPool):
    """``num_workers`` Ray actors, each a :class:`LandscapeWorker`; replaces actors that die.

    Joins the cluster at ``cluster.address`` unless Ray is already connected, and refuses a pool
    the cluster cannot hold. With ``data_spec.num_shards`` = S > 1, actor i holds shard i mod S;
    every job is evaluated once per shard, by an actor of that shard, and the parts are combined
    exactly on the driver.
    """

    def __init__(self, model_spec: ModelSpec, data_spec: DataSpec, evaluation: EvaluationConfig,
                 cluster: ClusterConfig | None = None,
                 quantities: tuple[str, ...] = DEFAULT_QUANTITIES, wait: bool = True,
                 runtime_env: dict | None = None):
        """``wait=False``: return once the actors are asked for, while they start (their
        TensorFlow import, model and data); :meth:`wait_ready` then waits for them."""
        import ray

        cluster = ClusterConfig() if cluster is None else check_cluster(cluster)
        connect_ray(cluster.address, hide_gpus=cluster.gpus_per_worker == 0)
        first = next(iter(data_spec.values())) if isinstance(data_spec, dict) else data_spec
        cluster = check_resources(cluster)
        check_workers(cluster.num_workers, first.num_shards)
        args = (ray.put(model_spec), data_spec, evaluation, cluster.threads_per_worker,
                cluster.gpus_per_worker > 0, True)
        backend = RayBackend(_actor_class(ray, cluster, runtime_env), args, quantities)
        super().__init__(backend, cluster, cluster.num_workers, first.num_shards, wait=wait)

    @property
    def actors(self) -> list:
        """The actor handles, in start order (a replacement in its predecessor's place)."""
        return self.scheduler.handles

    def call_beside(self, target: str, *args):
        """``target`` (``'module:function'``) called with ``args`` by the first worker, in this
        process's working directory, its warnings and log records relayed here (see
        ``execution.relay``); None where that worker runs on another node or could not answer
        (the caller then makes the call itself). Returns once that worker has started."""
        import ray

        node = ray.get_runtime_context().get_node_id()
        try:
            reply = self.backend.result(
                self.backend.send(self.actors[0], "call", target, args, os.getcwd(), node))
        except (WorkerLost, JobFailed):
            return None
        return None if reply is None else reply.deliver()
