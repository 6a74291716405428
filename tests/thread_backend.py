"""A third execution backend, for the tests: workers are threads of this process, each holding
its own :class:`LandscapeWorker`, run by the same scheduler as Ray's actors.

Registered by the tests with ``BACKENDS.register("threads")(ThreadPool)``; nothing of the package
knows it, which is the point: the pool interface and the scheduler are all a backend needs.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import traceback

from landscape_dist.config.schema import ClusterConfig
from landscape_dist.execution import JobFailed, WorkerLost, WorkerPool
from landscape_dist.execution.worker import LandscapeWorker
from landscape_dist.registry import plugins

_BUILD = threading.Lock()  # Keras builds one model at a time in a process


class ThreadWorker:
    """One worker thread (a one-thread executor: calls run in the order sent) and the
    :class:`LandscapeWorker` it builds first."""

    def __init__(self, build, shard: int):
        self.shard = shard
        self.lost = False
        self.executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"shard{shard}")
        self.built = self.executor.submit(build)


class ThreadBackend:
    """Starts :class:`ThreadWorker` s; futures are ``concurrent.futures.Future`` s that carry
    their worker, so that a lost worker's answers come back lost."""

    def __init__(self, model_spec, data_spec, evaluation, quantities):
        self._args = (model_spec, data_spec, evaluation)
        self._quantities = tuple(quantities)
        self._plugins = plugins()

    def _build(self, shard: int) -> LandscapeWorker:
        with _BUILD:
            return LandscapeWorker(*self._args, shard=shard, quantities=self._quantities,
                                   plugins=self._plugins)

    def start(self, shard: int) -> ThreadWorker:
        return ThreadWorker(lambda: self._build(shard), shard)

    def send(self, handle: ThreadWorker, method: str, *args) -> cf.Future:
        if handle.lost:
            future = cf.Future()
            future.set_result(None)
        else:
            future = handle.executor.submit(
                lambda: getattr(handle.built.result(), method)(*args))
        future.worker, future.method = handle, method  # what result() must know of it
        return future

    def wait(self, futures: list, timeout: float, num_returns: int = 1) -> list:
        when = cf.ALL_COMPLETED if num_returns >= len(futures) else cf.FIRST_COMPLETED
        done, _ = cf.wait(futures, timeout=timeout, return_when=when)
        return [f for f in futures if f in done]  # in the order sent

    def result(self, future: cf.Future, timeout: float | None = None):
        handle, method = future.worker, future.method
        if handle.lost:
            raise WorkerLost(f"the worker thread of shard {handle.shard} was marked lost")
        try:
            return future.result(timeout)
        except cf.TimeoutError:
            raise
        except Exception as err:  # noqa: BLE001
            if method == "ready":  # bad model or data: raised as an in-process worker raises it
                raise
            raise JobFailed("".join(traceback.format_exception(err))) from err

    def discard(self, handle: ThreadWorker) -> None:
        handle.lost = True
        handle.executor.shutdown(wait=False, cancel_futures=True)

    def share(self, value):
        return value

    def lose(self, handle: ThreadWorker) -> None:
        """Test hook: the worker's answers not yet collected, and its later calls, come back
        lost, as from a killed process (the thread itself finishes what it holds)."""
        handle.lost = True


class ThreadPool(WorkerPool):
    """``cluster.num_workers`` worker threads (default: one per data shard); worker i holds
    shard i mod the number of shards."""

    def __init__(self, model_spec, data_spec, evaluation, cluster: ClusterConfig,
                 quantities=("loss",), wait: bool = True):
        first = next(iter(data_spec.values())) if isinstance(data_spec, dict) else data_spec
        backend = ThreadBackend(model_spec, data_spec, evaluation, quantities)
        super().__init__(backend, cluster, cluster.num_workers or first.num_shards,
                         first.num_shards, wait=wait)
