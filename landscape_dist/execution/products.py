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


def run_rows(pool, which: str, rows: np.ndarray, names, quantities=None) -> list[np.ndarray]:
    """``rows`` (m, ...) evaluated as ``which`` jobs, split evenly over the workers of each shard
    (the shards combined by ``quantities``); the parts ``names``, each with the jobs' rows
    concatenated in order."""
    size = _chunks(pool, len(rows))
    chunks = {}
    jobs = [Job(i, which, rows[i:i + size]) for i in range(0, len(rows), size)]
    pool.run(jobs, chunks.__setitem__, quantities=quantities)
    keys = sorted(chunks)
    return [np.concatenate([chunks[k][name] for k in keys]) for name in names]


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
        hvp, = run_rows(self.pool, HVP, vectors.astype(np.float32), ("hvp",),
                        of_first_dataset(self.pool, PRODUCTS))
        self.products += len(vectors)
        return hvp


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
        loss, gradient = run_rows(self.pool, GRADIENT, weights_rows.astype(np.float32),
                                  ("loss", "gradient"), of_first_dataset(self.pool, GRADIENTS))
        self.rows += len(weights_rows)
        return loss.astype(np.float64), gradient.astype(np.float64)


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
        hvp, = run_rows(self.pool, HVP_AT, pairs, ("hvp",), of_first_dataset(self.pool, PRODUCTS))
        self.products += len(pairs)
        return hvp.astype(np.float64)


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
        loss, = run_rows(self.pool, WEIGHTS, weights_rows.astype(np.float32),
                         (main_loss(self.pool.names),))
        self.rows += len(weights_rows)
        return loss.astype(np.float64)
