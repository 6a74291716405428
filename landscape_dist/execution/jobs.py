"""Jobs: the unit a pool hands to a worker, and the queues a pool keeps while it runs them."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..core.quantities import POINTS, WEIGHTS, QuantitySet
from ..errors import TileError

__all__ = ["Job", "JobQueue", "LazyJobs", "ShardGather", "POINTS", "WEIGHTS", "TileError"]


@dataclass(frozen=True)
class Job:
    """Evaluate ``items`` (plane coordinates for POINTS, flat weights for WEIGHTS, vectors for
    HVP), ``which`` says; the result is reported under ``key`` (a tile index, a path chunk)."""

    key: object
    which: str
    items: np.ndarray


class JobQueue:
    """The jobs still to hand out, one queue per data shard, drawn lazily from an iterable.

    Every job is evaluated once on each shard; a job taken from the iterable goes into every
    shard's queue. A job whose worker died goes back to the front of its shard's queue.
    """

    def __init__(self, jobs: Iterable[Job], num_shards: int):
        self._pending: Iterator[Job] = iter(jobs)
        self._queues = [collections.deque() for _ in range(num_shards)]
        self._exhausted = False

    def take(self, shard: int) -> Job | None:
        """The next job for ``shard``, or None when it has none left."""
        queue = self._queues[shard]
        if not queue and not self._exhausted:
            job = next(self._pending, None)
            if job is None:
                self._exhausted = True
            else:
                for q in self._queues:
                    q.append(job)
        return queue.popleft() if queue else None

    def put_back(self, job: Job, shard: int) -> None:
        self._queues[shard].appendleft(job)

    @property
    def empty(self) -> bool:
        """No job left to hand out, now or later."""
        return self._exhausted and not any(self._queues)


class ShardGather:
    """Collects each job's per-shard parts; a job is complete when every shard has answered."""

    def __init__(self, quantities: QuantitySet, sizes):
        self.quantities = quantities
        self.sizes = sizes  # examples per shard: a list, or lists by dataset
        self.num_shards = len(next(iter(sizes.values())) if isinstance(sizes, dict) else sizes)
        self._parts: dict = {}  # job key -> {shard: parts}

    def add(self, key, shard: int, parts: dict) -> dict | None:
        """Store one shard's parts; the combined quantities once all shards are in, else None."""
        if self.num_shards == 1:  # nothing to combine: the whole data's parts (as exact)
            return self.quantities.finish(parts)
        got = self._parts.setdefault(key, {})
        got[shard] = parts
        if len(got) < self.num_shards:
            return None
        del self._parts[key]
        return self.quantities.combine([got[s] for s in range(self.num_shards)], self.sizes)


class LazyJobs:
    """Jobs made one at a time from ``items`` by ``make`` (arrays are built as the pool takes
    them), whose number is known ahead: ``len`` says it, so the pool can bound the workers'
    strategy tuning by the run's length."""

    def __init__(self, items, make):
        self._items, self._make = list(items), make

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Job]:
        return (self._make(item) for item in self._items)


def shard_sizes(per_shard: list[dict]) -> dict[str, list[int]]:
    """Examples by dataset, as lists over shards, from each shard's ``{dataset: examples}``."""
    return {dataset: [sizes[dataset] for sizes in per_shard] for dataset in per_shard[0]}
