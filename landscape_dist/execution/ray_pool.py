"""The Ray pool: worker actors run by the scheduler (see ``execution.scheduler``); this module
holds only the Ray calls: starting actors, calling them, waiting, and ending lost ones."""

from __future__ import annotations

import os
import re
import time

from ..config.schema import ClusterConfig, EvaluationConfig
from ..model.quantities import DEFAULT_QUANTITIES
from ..model.sources import DataSpec, ModelSpec
from ..registry import plugins
from .cluster import actor_resources, check_resources, connect_ray, gpus_hidden
from .pool import WorkerPool, check_cluster
from .scheduler import JobFailed, WorkerLost, check_workers
from .worker import LandscapeWorker

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in Ray's error text


_MEMORY = re.compile(r"OutOfMemory|MemoryError|memory pressure|out of memory|low on memory|"
                     r"\bOOM\b", re.IGNORECASE)
_NODE_MEMORY = re.compile(r"([\d.]+)\s*GB(?: used)? / ([\d.]+)\s*GB")  # Ray's report, old and new
_WORKER_MEMORY = re.compile(r"memory used=([\d.]+)\s*GB")
RETRY_PAUSE_S = 2.0  # before the one retry of a worker that ran out of memory while starting


def short_of_memory(err: BaseException) -> bool:
    """Whether a worker's failure to start was its node running out of memory (Ray's memory
    monitor ended it, or it raised MemoryError while building its model and data)."""
    from ray.exceptions import OutOfMemoryError

    return isinstance(err, (OutOfMemoryError, MemoryError)) or bool(_MEMORY.search(str(err)))


def memory_shortage(err: BaseException) -> str:
    """One line for a worker that ran out of memory again after its retry: what it held, what
    its node had free (as Ray's report gives them), and the settings that lower its need."""
    text = _ANSI.sub("", str(err))
    node, worker = _NODE_MEMORY.search(text), _WORKER_MEMORY.search(text)
    held = f"the worker held {float(worker.group(1)):g} GB" if worker else "the worker's need"
    if node:
        used, total = float(node.group(1)), float(node.group(2))
        free = f"{max(total - used, 0.0):.2g} GB of the node's {total:g} GB were free"
    else:
        free = "the node had no more free"
    return (f"its node ran out of memory while it started, twice ({held} when {free}). Lower "
            f"cluster.num_workers, evaluation.memory_budget_mb or the data each worker holds "
            f"(evaluation.examples, data.shards), or run on nodes with more memory.")


def _boot_class(package_dir: str, methods: list[str]):
    """A class pickled by value (nothing in it names this package) for Ray to start workers
    with: it puts ``package_dir``, the directory holding the driver's ``landscape_dist``, first
    on the worker's ``sys.path`` while it imports the package (Ray puts the driver's working
    directory first, where another checkout may lie), then builds a ``LandscapeWorker`` from
    the arguments pickled on the driver and forwards ``methods`` to it. Actors need no runtime
    environment of their own for this, so they still start on the workers Ray started ahead."""

    def forward(name):
        def method(self, *args):
            return getattr(self._worker, name)(*args)
        method.__name__ = method.__qualname__ = name
        return method

    def __init__(self, blob, shard, quantities):
        import os
        import sys

        loaded = sys.modules.get("landscape_dist")
        if loaded is not None and os.path.dirname(os.path.dirname(
                getattr(loaded, "__file__", "") or "")) != package_dir:
            for name in [n for n in sys.modules if n.split(".")[0] == "landscape_dist"]:
                del sys.modules[name]  # imported from elsewhere before: import the driver's
        sys.path.insert(0, package_dir)
        try:
            from landscape_dist.execution.worker import LandscapeWorker
        finally:
            sys.path.remove(package_dir)  # the worker's own imports keep Ray's order
        from ray import cloudpickle

        args, plugins = cloudpickle.loads(blob)
        self._worker = LandscapeWorker(*args, shard=shard, quantities=quantities,
                                       plugins=plugins)

    namespace = {name: forward(name) for name in methods}
    namespace["__init__"] = __init__
    return type("LandscapeWorker", (), namespace)


def _package_dir() -> str:
    """The directory holding the ``landscape_dist`` package this process imported."""
    import landscape_dist

    return os.path.dirname(os.path.dirname(os.path.abspath(landscape_dist.__file__)))


class RayBackend:
    """Workers as Ray actors of ``actor_class`` built with ``args`` (the
    :class:`LandscapeWorker` arguments before ``shard``); futures are object refs.

    A worker whose start fails for lack of memory is started once more after a pause (the
    shortage may have been passing: another process's peak); the scheduler keeps its handle,
    whose calls go to the new actor (the calls sent before its ``ready`` are sent again). A
    second shortage is one line (:func:`memory_shortage`). ``ray``: the module (tests pass a
    fake).
    """

    def __init__(self, actor_class, args: tuple, quantities: tuple[str, ...], ray=None,
                 retry_pause_s: float = RETRY_PAUSE_S):
        if ray is None:
            import ray
        from ray import cloudpickle

        self._ray = ray
        self._actor_class = actor_class
        self._quantities = tuple(quantities)
        # what was registered here reaches the actors; one copy in the object store for all
        self._blob = ray.put(cloudpickle.dumps((tuple(args), plugins())))
        self.retry_pause_s = retry_pause_s
        self._shard: dict = {}  # handle -> its shard
        self._early: dict = {}  # handle not yet ready -> calls sent to it before ``ready``
        self._ready: dict = {}  # ready future -> its handle
        self._moved: dict = {}  # handle -> the actor started again in its place
        self._retried: set = set()

    def start(self, shard: int):
        handle = self._actor_class.remote(self._blob, shard, self._quantities)
        self._shard[handle], self._early[handle] = shard, []
        return handle

    def send(self, handle, method: str, *args):
        future = getattr(self._moved.get(handle, handle), method).remote(*args)
        if handle in self._early:
            if method == "ready":
                self._ready[future] = handle
            else:
                self._early[handle].append((method, args))
        return future

    def wait(self, futures: list, timeout: float, num_returns: int = 1) -> list:
        done, _ = self._ray.wait(futures, num_returns=num_returns, timeout=timeout)
        return done

    def result(self, future, timeout: float | None = None):
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError

        handle = self._ready.pop(future, None)
        try:
            value = self._ray.get(future, timeout=timeout)
        except RayTaskError as err:  # an exception in user code, traceback included
            raise JobFailed(_ANSI.sub("", str(err))) from err
        except GetTimeoutError:
            if handle is not None:
                self._ready[future] = handle
            raise
        except RayError as err:  # the actor died, its node was lost, or it could not start
            if handle is not None and short_of_memory(err):
                return self._start_again(handle, err, timeout)
            raise WorkerLost(str(err)) from err
        if handle is not None:
            self._early.pop(handle, None)
        return value

    def _start_again(self, handle, err: BaseException, timeout: float | None):
        """The ``ready`` answer of a worker started once more in place of ``handle``, whose
        start ran out of memory; WorkerLost in one line when it had been started again."""
        if handle in self._retried:
            self._early.pop(handle, None)
            raise WorkerLost(memory_shortage(err)) from err
        self._retried.add(handle)
        self._kill(self._moved.get(handle, handle))
        time.sleep(self.retry_pause_s)
        self._moved[handle] = self._actor_class.remote(self._blob, self._shard[handle],
                                                       self._quantities)
        for method, args in self._early[handle]:
            getattr(self._moved[handle], method).remote(*args)
        return self.result(self.send(handle, "ready"), timeout)

    def _kill(self, actor) -> None:
        try:
            self._ray.kill(actor)  # its CPUs go back to the cluster
        except Exception:  # noqa: BLE001 - the handle of a dead actor may already be gone
            pass

    def discard(self, handle) -> None:
        self._kill(self._moved.pop(handle, handle))
        for table in (self._shard, self._early):
            table.pop(handle, None)
        self._retried.discard(handle)

    def share(self, value):
        return self._ray.put(value)


def _actor_class(ray, cluster: ClusterConfig, runtime_env: dict | None):
    """``LandscapeWorker`` as a Ray actor class with the resources and environment asked for,
    importing the driver's ``landscape_dist`` (see :func:`_boot_class`)."""
    env_vars = dict((runtime_env or {}).get("env_vars", {}))
    if cluster.gpus_per_worker == 0 and not gpus_hidden():
        env_vars.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU actors must not grab a GPU
    env = {**(runtime_env or {}), **({"env_vars": env_vars} if env_vars else {})}
    methods = [name for name, value in vars(LandscapeWorker).items()
               if callable(value) and not name.startswith("_")]
    # without an environment of their own, actors start on the workers Ray started ahead
    return ray.remote(_boot_class(_package_dir(), methods)).options(
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
        args = (model_spec, data_spec, evaluation, cluster.threads_per_worker,
                cluster.gpus_per_worker > 0, True)
        backend = RayBackend(_actor_class(ray, cluster, runtime_env), args, quantities)
        super().__init__(backend, cluster, cluster.num_workers, first.num_shards, wait=wait)

    @property
    def actors(self) -> list:
        """The actor handles, in start order (a replacement in its predecessor's place)."""
        return self.scheduler.handles

    def call_beside(self, function, *args):
        """``function`` (importable by the workers) called with ``args`` by the first worker, in this
        process's working directory, its warnings and log records relayed here (see
        ``execution.relay``); None where that worker runs on another node or could not answer
        (the caller then makes the call itself). Returns once that worker has started."""
        import ray

        node = ray.get_runtime_context().get_node_id()
        try:
            reply = self.backend.result(
                self.backend.send(self.actors[0], "call", function, args, os.getcwd(), node))
        except (WorkerLost, JobFailed):
            return None
        return None if reply is None else reply.deliver()
