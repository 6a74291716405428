"""The in-process pool: workers in this process, jobs one after another (tests, debugging,
tiny grids), run by the same scheduler as the other backends."""

from __future__ import annotations

from ..config.schema import ClusterConfig, EvaluationConfig
from ..model.quantities import DEFAULT_QUANTITIES
from ..model.sources import DataSpec, ModelSpec
from ..registry import plugins
from .pool import WorkerPool, check_cluster
from .scheduler import WorkerLost
from .worker import LandscapeWorker


class Done:
    """A call already made: its value, or that its worker was lost before answering."""

    def __init__(self, handle: "LocalWorker", value=None):
        self.handle, self.value = handle, value


class LocalWorker:
    """The handle of one worker of this process: the :class:`LandscapeWorker` it holds."""

    def __init__(self, worker: LandscapeWorker, shard: int):
        self.worker, self.shard = worker, shard
        self.lost = False


class LocalBackend:
    """Builds workers in this process and calls them at once (errors raised as themselves), so
    every future is done when sent. :meth:`lose` is the test hook for a lost worker."""

    def __init__(self, model_spec, data_spec, evaluation, quantities: tuple[str, ...]):
        self._args = (model_spec, data_spec, evaluation)
        self._quantities = tuple(quantities)

    def start(self, shard: int) -> LocalWorker:
        worker = LandscapeWorker(*self._args, shard=shard, quantities=self._quantities,
                                 plugins=plugins())
        return LocalWorker(worker, shard)

    def send(self, handle: LocalWorker, method: str, *args) -> Done:
        if handle.lost:
            return Done(handle)
        return Done(handle, getattr(handle.worker, method)(*args))

    def wait(self, futures: list, timeout: float, num_returns: int = 1) -> list:
        return list(futures)

    def result(self, future: Done, timeout: float | None = None):
        if future.handle.lost:
            raise WorkerLost("the in-process worker was marked lost")
        return future.value

    def discard(self, handle: LocalWorker) -> None:
        handle.lost = True

    def share(self, value):
        return value

    def lose(self, handle: LocalWorker) -> None:
        """Test hook: the worker's answers not yet collected, and its later calls, come back
        lost, as from a killed process."""
        handle.lost = True


class InProcessPool(WorkerPool):
    """Evaluates jobs one after another in this process, with this process's threads; with
    ``data_spec.num_shards`` > 1, one worker per shard, combined exactly. ``data_spec`` may be a
    dict of several datasets by name. ``cluster`` (default: the default settings): only
    ``max_tile_retries`` matters here; ``wait`` is accepted for the common signature (workers
    are built at once)."""

    builds_at_once = True

    def __init__(self, model_spec: ModelSpec, data_spec: DataSpec, evaluation: EvaluationConfig,
                 cluster: ClusterConfig | None = None,
                 quantities: tuple[str, ...] = DEFAULT_QUANTITIES, wait: bool = True):
        cluster = ClusterConfig(backend="local") if cluster is None else check_cluster(cluster)
        first = next(iter(data_spec.values())) if isinstance(data_spec, dict) else data_spec
        backend = LocalBackend(model_spec, data_spec, evaluation, quantities)
        # one job at a time: calls return when done, so a deeper queue would only run ahead
        super().__init__(backend, cluster, first.num_shards, first.num_shards, wait=True, depth=1)

    @property
    def workers(self) -> list[LandscapeWorker]:
        """The workers, one per shard, in shard order."""
        return [handle.worker for handle in self.scheduler.handles]
