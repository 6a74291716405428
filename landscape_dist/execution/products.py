"""What the pool's workers compute about the loss besides its values: the Hessian at the plane's
centre as a Lanczos operator, and the loss with its gradient at any weights; every batch of rows
is a job (or one per worker), the shards of the data combined exactly."""

from __future__ import annotations

import math

import numpy as np

from ..core.quantities import (GRADIENT, GRADIENTS, HVP, HVP_AT, PRODUCTS, WEIGHTS, Part,
                               QuantitySet, main_loss)
from .jobs import Job


def _chunks(pool, rows: int) -> int:
    """Rows per job: the rows split evenly over the workers of each shard."""
    per_shard = max(1, pool.num_workers // max(1, pool.num_shards))
    return max(1, math.ceil(rows / per_shard))


def of_first_dataset(pool, quantities: QuantitySet) -> QuantitySet:
    """``quantities`` (parts the worker computes on its first dataset) weighed by that dataset's
    shard sizes: the pool's sizes are by dataset name, '' for the only one."""
    dataset = next(iter(pool.sizes), "")
    return QuantitySet(tuple(Part(p.name, p.reduce, p.stored, dataset) for p in quantities.parts))


class PoolHessian:
    """The Hessian at the pool's plane centre as a Lanczos operator: ``self(vectors, rows)``
    returns H v for each row of ``vectors`` (m, size), the rows split into one job per worker
    (of each shard), so the products of one step run side by side."""

    def __init__(self, pool):
        self.pool = pool
        self.products = 0

    def __call__(self, vectors, rows=None) -> np.ndarray:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        size = _chunks(self.pool, len(vectors))
        chunks = {}
        jobs = [Job(i, HVP, vectors[i:i + size].astype(np.float32))
                for i in range(0, len(vectors), size)]
        self.pool.run(jobs, chunks.__setitem__, quantities=of_first_dataset(self.pool, PRODUCTS))
        self.products += len(vectors)
        return np.concatenate([chunks[k]["hvp"] for k in sorted(chunks)])


class PoolGradient:
    """The loss the grid shows and its gradient at any weights, on the pool:
    ``self(weights_rows (m, size)) -> (loss (m,), gradient (m, size))``, float64. Of the first
    dataset where there are several; the non-trainable values (batch-norm statistics) are those
    of the pool's plane centre, so call ``pool.set_plane`` first. The rows are split into one job
    per worker (of each shard); :attr:`rows` counts the rows evaluated."""

    def __init__(self, pool):
        self.pool = pool
        self.rows = 0

    def __call__(self, weights_rows) -> tuple[np.ndarray, np.ndarray]:
        weights_rows = np.atleast_2d(np.asarray(weights_rows, dtype=np.float64))
        size = _chunks(self.pool, len(weights_rows))
        chunks = {}
        jobs = [Job(i, GRADIENT, weights_rows[i:i + size].astype(np.float32))
                for i in range(0, len(weights_rows), size)]
        self.pool.run(jobs, chunks.__setitem__, quantities=of_first_dataset(self.pool, GRADIENTS))
        self.rows += len(weights_rows)
        keys = sorted(chunks)
        return (np.concatenate([np.asarray(chunks[k]["loss"], np.float64) for k in keys]),
                np.concatenate([np.asarray(chunks[k]["gradient"], np.float64) for k in keys]))


class PoolHessianAt:
    """The Hessians at several weight vectors ``weights`` (B, size) as one batched Lanczos
    operator: ``self(vectors, rows)`` returns H(weights[rows[i]]) vectors[i] for each row i of
    ``vectors`` (m, size), the rows split into one job per worker (of each shard), each job's
    items the pairs (weights, vector). Of the first dataset where there are several; the
    non-trainable values are those of the pool's plane centre (call ``pool.set_plane`` first)."""

    def __init__(self, pool, weights):
        self.pool = pool
        self.weights = np.asarray(weights, dtype=np.float32)
        self.products = 0

    def __call__(self, vectors, rows) -> np.ndarray:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        pairs = np.stack([self.weights[np.asarray(rows)], vectors], axis=1)  # (m, 2, size)
        size = _chunks(self.pool, len(pairs))
        dataset = next(iter(self.pool.sizes), "")
        combine = QuantitySet(tuple(Part(p.name, p.reduce, p.stored, dataset)
                                    for p in PRODUCTS.parts))
        chunks = {}
        jobs = [Job(i, HVP_AT, pairs[i:i + size]) for i in range(0, len(pairs), size)]
        self.pool.run(jobs, chunks.__setitem__, quantities=combine)
        self.products += len(pairs)
        return np.concatenate([np.asarray(chunks[k]["hvp"], np.float64) for k in sorted(chunks)])


class PoolLoss:
    """The loss the grid shows at any weights, on the pool: ``self(weights_rows (m, size)) ->
    (m,)`` float64 (the first dataset's where there are several), by WEIGHTS jobs, one per
    worker (of each shard). Selects the ``loss`` quantity alone on the pool's workers from its
    first call on (a sweep selects each slice's own). :attr:`rows` counts the rows evaluated."""

    def __init__(self, pool):
        self.pool = pool
        self.rows = 0
        self._selected = False

    def __call__(self, weights_rows) -> np.ndarray:
        if not self._selected:
            self.pool.select_quantities(("loss",))  # metrics and other quantities are not needed
            self._selected = True
        weights_rows = np.atleast_2d(np.asarray(weights_rows, dtype=np.float64))
        size = _chunks(self.pool, len(weights_rows))
        chunks = {}
        jobs = [Job(i, WEIGHTS, weights_rows[i:i + size].astype(np.float32))
                for i in range(0, len(weights_rows), size)]
        self.pool.run(jobs, chunks.__setitem__)
        self.rows += len(weights_rows)
        name = main_loss(self.pool.names)
        return np.concatenate([np.asarray(chunks[k][name], np.float64) for k in sorted(chunks)])
