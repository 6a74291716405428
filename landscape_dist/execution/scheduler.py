"""The scheduler: jobs handed to workers, results gathered, lost workers replaced; no backend.

A backend (Ray actors, threads, this process) is reached through a small :class:`Backend`
adapter that starts workers, sends them method calls of
:class:`~landscape_dist.execution.worker.LandscapeWorker` and waits for the answers. The
scheduler keeps apart what :class:`ray.util.ActorPool` keeps apart: *submitting* keeps every
live worker ``depth`` jobs deep (:meth:`Scheduler.submit`); *collecting* takes finished answers,
gathers the shards of each job and reports the jobs finished together as one batch
(:meth:`Scheduler.collect`, :meth:`Scheduler.run`); *replacement* puts a
lost worker's jobs back on the queue and starts another worker while the rest carry on.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Callable, Hashable, Iterable, Protocol

from ..config.schema import ClusterConfig
from ..errors import LandscapeError, TileError
from .jobs import Job, JobQueue, ShardGather

log = logging.getLogger(__name__)

DEPTH = 2  # jobs in flight per worker: one running, one queued behind it
START_TIMEOUT_S = 300.0  # how long a replacement may take to start when no worker is left


class WorkerLost(Exception):
    """The worker that held a call is gone (process killed, node lost): its jobs go elsewhere."""


class JobFailed(Exception):
    """A call failed in user code on a live worker; the message is the worker's own report
    (its traceback included). Retrying will not help."""


class Backend(Protocol):
    """What the scheduler needs of an execution backend. Handles and futures are the backend's
    own objects (hashable); calls sent to one worker run in the order sent."""

    def start(self, shard: int) -> Hashable:
        """Ask for a new worker holding data shard ``shard``; its handle, perhaps before the
        worker is built (the ``ready`` call answers once it is)."""

    def send(self, handle: Hashable, method: str, *args) -> Hashable:
        """Call ``LandscapeWorker.<method>(*args)`` on the worker; a future of the answer."""

    def wait(self, futures: list, timeout: float, num_returns: int = 1) -> list:
        """Those of ``futures`` that are done: once ``num_returns`` are, or ``timeout`` s
        have passed (then perhaps fewer)."""

    def result(self, future: Hashable, timeout: float | None = None) -> Any:
        """The answer of a call; raises :class:`WorkerLost` when its worker is gone,
        :class:`JobFailed` (or the error itself) when the call failed in user code."""

    def discard(self, handle: Hashable) -> None:
        """End a worker (a lost one too), so that its resources go back before a
        replacement asks for them."""

    def share(self, value: Any) -> Any:
        """``value`` as workers should receive it (Ray: put into the object store once)."""


def check_workers(num_workers: int, num_shards: int) -> None:
    """Refuse a pool with fewer workers than data shards (each shard needs a worker)."""
    if num_workers < num_shards:
        raise LandscapeError(f"The 'cluster.num_workers' setting is {num_workers}, fewer "
                             f"than the {{shards}} ({num_shards}): each shard needs a worker. "
                             f"Raise cluster.num_workers or use fewer shards.",
                             shards="number of data shards")


def last_line(err: BaseException) -> str:
    """The last line of an error's text (a remote traceback's verdict), or its class name."""
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def refusal(info: dict) -> BaseException | None:
    """What a worker's ``ready()`` description says it refused (bad model or data), or None."""
    error = info.get("error")
    if error is None:
        return None
    return error if isinstance(error, BaseException) else ValueError(str(error))


def _number(value) -> str:
    return "auto" if value is None else f"{value:g}"


class Scheduler:
    """``num_workers`` workers of ``backend`` (worker i holds shard i mod ``num_shards``), fed
    from a :class:`JobQueue`, each holding up to ``depth`` jobs; lost workers replaced.

    ``prepare(handle)`` is called on every worker right after it is asked for, before its
    ``ready`` call and any job: the pool sends a replacement the plane and quantities in use.
    Public state: ``handles`` (workers in start order, a replacement in its predecessor's
    place), ``shard_of`` (handle -> shard), ``info`` (handle -> its ``ready()`` description, for
    workers that have started) and ``replacements`` (workers replaced so far).
    """

    def __init__(self, backend: Backend, cluster: ClusterConfig, num_workers: int,
                 num_shards: int, prepare: Callable[[Hashable], None] = lambda handle: None,
                 depth: int = DEPTH, start_timeout_s: float = START_TIMEOUT_S):
        self.backend, self.cluster, self.num_shards = backend, cluster, num_shards
        self.prepare, self.depth, self.start_timeout_s = prepare, depth, start_timeout_s
        self.shard_of: dict = {}
        self.info: dict = {}
        self.replacements = 0
        self._starting: dict = {}  # worker not yet ready -> (its ready future, start time)
        self._load: dict = {}  # live worker -> jobs it holds
        self._in_flight: dict = {}  # future -> (worker, job, shard)
        self._retries = collections.Counter()  # (job key, shard) -> times its worker was lost
        self.handles = [self._start(i % num_shards) for i in range(num_workers)]

    def _start(self, shard: int) -> Hashable:
        handle = self.backend.start(shard)
        self.shard_of[handle] = shard
        self.prepare(handle)
        self._starting[handle] = (self.backend.send(handle, "ready"), time.monotonic())
        return handle

    @property
    def live(self) -> list:
        """The workers that have started, in start order."""
        return [h for h in self.handles if h not in self._starting]

    def wait_ready(self) -> list[dict]:
        """Wait for every worker still starting; their ``ready()`` descriptions, in start order.
        Raises :class:`TileError` when one could not start, or what a worker refused."""
        infos = []
        for handle in list(self._starting):
            future, _ = self._starting.pop(handle)
            try:
                info = self.backend.result(future)
            except (WorkerLost, JobFailed) as err:
                raise TileError(f"A worker failed to start: {last_line(err)}") from None
            refused = refusal(info)
            if refused is not None:
                raise refused
            self.info[handle] = info
            infos.append(info)
        return infos

    # ------------------------------------------------------------------ the loop

    def run(self, jobs: Iterable[Job], gather: ShardGather, on_results: Callable) -> None:
        """Hand ``jobs`` (consumed lazily) to the workers until all are done. Every answer that
        is in when the scheduler looks is taken at once: the jobs they complete (shards
        combined by ``gather``) go to ``on_results([(key, result), ...])`` together, each job
        once, before the workers are given more. Raises :class:`TileError` when a job fails in
        user code, loses its worker more than ``cluster.max_tile_retries`` times, or no worker
        is left."""
        queue = JobQueue(jobs, self.num_shards)
        self._load = {h: 0 for h in self.live}
        self._in_flight = {}
        self._retries.clear()
        while True:
            self.submit(queue)
            if not self._in_flight and queue.empty:
                return
            if not self._load and not self._starting:
                raise TileError("No worker is left to evaluate the remaining jobs.")
            finished = []
            try:
                for future in self._next_done(timeout=1.0):
                    self.collect(future, queue, gather,
                                 lambda key, result: finished.append((key, result)))
            finally:  # a failure later in the batch does not lose the jobs finished before it
                if finished:
                    on_results(finished)
            self._check_starting()

    def submit(self, queue: JobQueue) -> None:
        """Fill every live worker up to ``depth`` jobs of its shard, least-loaded first."""
        for handle in sorted(self._load, key=self._load.get):
            shard = self.shard_of[handle]
            while self._load[handle] < self.depth:
                job = queue.take(shard)
                if job is None:
                    break
                future = self.backend.send(handle, "evaluate", job.which, job.items)
                self._in_flight[future] = (handle, job, shard)
                self._load[handle] += 1

    def _next_done(self, timeout: float) -> list:
        """Every finished job future: waits (up to ``timeout`` s) for one, then takes all the
        others that are done by then; replacements that finished starting are taken in on the
        way."""
        starting = {future: handle for handle, (future, _) in self._starting.items()}
        waiting = list(self._in_flight) + list(starting)
        done = self.backend.wait(waiting, timeout)
        if done and len(done) < len(waiting):
            first = set(done)
            rest = [future for future in waiting if future not in first]
            done = done + list(self.backend.wait(rest, 0.0, num_returns=len(rest)))
        for future in done:
            if future in starting:
                self._started(starting[future], future)
        return [future for future in done if future not in starting]

    def collect(self, future, queue: JobQueue, gather: ShardGather, on_result: Callable) -> None:
        """Take one finished job future: report its job once every shard is in; when its
        worker was lost, put the job back and replace the worker."""
        handle, job, shard = self._in_flight.pop(future)
        try:
            parts = self.backend.result(future)
        except WorkerLost as err:
            self._count_loss(job.key, shard, err)
            queue.put_back(job, shard)
            if handle in self._load:  # its other jobs come back lost too: replace it once
                del self._load[handle]
                self._replace(handle, err)
            return
        except JobFailed as err:
            raise TileError(f"Evaluating job {job.key} failed in user code:\n{err}") from None
        if handle in self._load:
            self._load[handle] -= 1
        result = gather.add(job.key, shard, parts)
        if result is not None:
            on_result(job.key, result)

    # ------------------------------------------------------------------ replacement

    def _count_loss(self, key, shard: int, err: WorkerLost) -> None:
        self._retries[(key, shard)] += 1
        lost = self._retries[(key, shard)]
        if lost > self.cluster.max_tile_retries:
            job = key if self.num_shards == 1 else f"{key} (shard {shard})"
            cause = err.__cause__ if err.__cause__ is not None else err
            raise TileError(f"Job {job} lost its worker {lost} times "
                            f"(cluster.max_tile_retries={self.cluster.max_tile_retries}); "
                            f"last error: {type(cause).__name__}") from None

    def _replace(self, lost, err: WorkerLost) -> None:
        cause = err.__cause__ if err.__cause__ is not None else err
        log.warning("a worker died (%s); starting a replacement", type(cause).__name__)
        self.backend.discard(lost)  # its resources go back before the replacement asks for them
        handle = self._start(self.shard_of.pop(lost))
        self.handles = [handle if h is lost else h for h in self.handles]
        self.info.pop(lost, None)
        self.replacements += 1

    def _started(self, handle, future) -> None:
        """A replacement finished starting (or failed to): from now on it gets jobs."""
        del self._starting[handle]
        try:
            info = self.backend.result(future)
        except (WorkerLost, JobFailed) as err:
            raise TileError(f"A replacement worker failed to start: {last_line(err)}") from None
        refused = refusal(info)
        if refused is not None:
            raise TileError(f"A replacement worker failed to start: {refused}") from None
        self.info[handle] = info
        self._load[handle] = 0

    def _check_starting(self) -> None:
        """Give up on replacements that cannot start when no other worker is left."""
        if self._load or not self._starting:
            return
        waited = time.monotonic() - min(t for _, t in self._starting.values())
        if waited > self.start_timeout_s:
            raise TileError(f"No worker is left and a replacement has waited {waited:.0f} s to "
                            f"start; the cluster may have lost the CPUs or GPUs it needs "
                            f"(cluster.cpus_per_worker={_number(self.cluster.cpus_per_worker)}, "
                            f"cluster.gpus_per_worker={_number(self.cluster.gpus_per_worker)}).")

    def close(self) -> None:
        """Let every worker remove its temporary files (a few seconds at most), then end it."""
        futures = [self.backend.send(h, "close") for h in self.handles]
        try:
            if futures:
                self.backend.wait(futures, timeout=5.0, num_returns=len(futures))
        except Exception:  # noqa: BLE001 - a lost or busy worker is ended all the same
            pass
        for handle in self.handles:
            self.backend.discard(handle)
        self.handles = []
        self._starting.clear()
        self._load.clear()
