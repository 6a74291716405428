"""The Hessian at a pool's plane centre as a Lanczos operator: every product is a job."""

from __future__ import annotations

import math

import numpy as np

from ..core.quantities import HVP, PRODUCTS
from .jobs import Job


class PoolHessian:
    """The Hessian at the pool's plane centre as a Lanczos operator: ``self(vectors, rows)``
    returns H v for each row of ``vectors`` (m, size), the rows split into one job per worker
    (of each shard), so the products of one step run side by side."""

    def __init__(self, pool):
        self.pool = pool
        self.products = 0

    def __call__(self, vectors, rows=None) -> np.ndarray:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        per_shard = max(1, self.pool.num_workers // max(1, self.pool.num_shards))
        size = max(1, math.ceil(len(vectors) / per_shard))
        chunks = {}
        jobs = [Job(i, HVP, vectors[i:i + size].astype(np.float32))
                for i in range(0, len(vectors), size)]
        self.pool.run(jobs, chunks.__setitem__, quantities=PRODUCTS)
        self.products += len(vectors)
        return np.concatenate([chunks[k]["hvp"] for k in sorted(chunks)])
