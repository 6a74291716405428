"""The in-process pool: workers in this process, jobs one after another (tests, debugging,
tiny grids)."""

from __future__ import annotations

from typing import Callable, Iterable

from ..model.quantities import DEFAULT_QUANTITIES
from .jobs import Job, ShardGather, shard_sizes
from .worker import LandscapeWorker


class InProcessPool:
    """Evaluates jobs one after another in this process, with this process's threads; with
    ``data_spec.num_shards`` > 1, one worker per shard, combined exactly. ``data_spec`` may be a
    dict of several datasets by name."""

    def __init__(self, model_spec, data_spec, evaluation,
                 quantities: tuple[str, ...] = DEFAULT_QUANTITIES):
        first = next(iter(data_spec.values())) if isinstance(data_spec, dict) else data_spec
        self.workers = [LandscapeWorker(model_spec, data_spec, evaluation, shard=s,
                                        quantities=quantities) for s in range(first.num_shards)]
        self.sizes = shard_sizes([w.sizes for w in self.workers])
        self.quantities = self.workers[0].quantities
        self.names = self.quantities.names

    def set_plane(self, centre, directions, non_trainable, non_trainable_directions=None,
                  recompute=None) -> None:
        for worker in self.workers:
            worker.set_plane(centre, directions, non_trainable, non_trainable_directions, recompute)

    def use(self, quantities: tuple[str, ...]) -> None:
        """Compute only ``quantities`` (names the workers were built for) in the jobs to come."""
        for worker in self.workers:
            worker.use(quantities)
        self.quantities = self.workers[0].quantities
        self.names = self.quantities.names

    def choices(self) -> list[dict]:
        """Each worker's evaluation strategy, by dataset."""
        return [worker.choices() for worker in self.workers]

    @property
    def num_workers(self) -> int:
        return len(self.workers)

    def run(self, jobs: Iterable[Job], on_result: Callable, quantities=None) -> None:
        """Evaluate ``jobs``; ``quantities``: how to combine their shards' parts (default: those
        in use; :data:`PRODUCTS` for HVP jobs)."""
        gather = ShardGather(quantities or self.quantities, self.sizes)
        for job in jobs:
            for shard, worker in enumerate(self.workers):
                result = gather.add(job.key, shard, worker.evaluate(job.kind, job.items))
            on_result(job.key, result)

    def close(self) -> None:
        pass
