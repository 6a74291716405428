"""Quantity kinds: what a worker computes at each point, registered under their configuration name.

A kind is built on a worker's :class:`~landscape_dist.model.evaluator.LandscapeEvaluator`,
describes its parts once (:class:`~landscape_dist.core.quantities.QuantitySet`: names and how
shards combine them) and computes them for a batch of points or weight vectors. A worker may hold
several kinds; their parts are merged, and the pool combines shards by the merged description.
A new kind (another dataset's loss, Hessian eigenvalues) is one class registered here.
"""

from __future__ import annotations

import numpy as np

from ..core.quantities import POINTS, WEIGHTS, Part, QuantitySet
from ..registry import QUANTITIES


class QuantityKind:
    """Base of the quantity kinds: built on an evaluator, describes and computes its parts."""

    def __init__(self, evaluator, names: tuple[str, ...] = (), settings=None):
        self.evaluator = evaluator
        self.names = tuple(names)  # the configuration names this instance was asked for
        self.settings = settings  # the evaluation settings

    def describe(self) -> QuantitySet:
        raise NotImplementedError

    def check_shardable(self) -> None:
        """Raise a ValueError when the parts cannot be combined from shards of the data."""

    def compute(self, which: str, items) -> dict:
        """The parts at ``items`` (plane coordinates or weight vectors, see ``which``)."""
        raise NotImplementedError


DEFAULT_QUANTITIES = ("loss",)


class LossAndMetrics(QuantityKind):
    """The model's compiled loss (data loss plus regularisation, as Keras's ``evaluate`` reports
    it) and every compiled metric."""

    def describe(self):
        return self.evaluator.quantities

    def check_shardable(self):
        from .checks import check_shardable  # TensorFlow only where a worker runs

        check_shardable(self.evaluator.model)

    def compute(self, which, items):
        return self.evaluator.parts(which, items)


class HessianExtremes(QuantityKind):
    """``hessian_max`` and ``hessian_min``: the largest and the smallest (most negative)
    eigenvalue of the Hessian in the full weight space at every point, by Lanczos runs that
    advance together for the points of a job (one compiled product call per step, within the
    memory budget). Settings: ``lanczos_steps``, ``lanczos_tol``, ``lanczos_seed`` of the
    evaluation settings."""

    def __init__(self, evaluator, names=("hessian_max", "hessian_min"), settings=None):
        super().__init__(evaluator, names, settings)
        from .hessian import HessianProducts  # TensorFlow only where a worker runs

        self.products = HessianProducts(evaluator, evaluator.mode)
        self.steps = getattr(settings, "lanczos_steps", 80)
        self.tol = getattr(settings, "lanczos_tol", 1e-5)
        self.seed = getattr(settings, "lanczos_seed", 0)

    def describe(self):
        return QuantitySet(tuple(Part(name, "mean") for name in self.names))

    def check_shardable(self):
        raise ValueError("The Hessian's eigenvalues at a point cannot be combined from shards of "
                         "the data (every Lanczos step needs the whole product).")

    def compute(self, which, items):
        from ..core.lanczos import extreme_eigenvalues, lanczos

        ev = self.evaluator
        items = np.asarray(items, dtype=np.float64)
        if which == POINTS:
            coords = items[:, None] if items.ndim == 1 else items
            weights = ev.weights_at(coords)
        elif which == WEIGHTS:
            coords, weights = None, np.atleast_2d(items)
        else:
            raise ValueError(f"Hessian eigenvalues are computed at points or weights, not {which!r}.")
        moving = coords is not None and ev._nt_dirs is not None
        size = weights.shape[1]
        # the same seeded start at every point: a point's value does not depend on its job
        start = np.random.default_rng(self.seed).standard_normal(size)
        steps = min(self.steps, size)
        basis = np.float32 if ev.dtype.size <= 4 else np.float64  # as precise as the products
        group = max(1, int(ev._budget // (np.dtype(basis).itemsize * (steps + 2) * size)))
        top, bottom = np.empty(len(weights)), np.empty(len(weights))
        for lo in range(0, len(weights), group):
            w = weights[lo:lo + group]
            c = coords[lo:lo + group] if moving else None

            def matvec(vectors, rows, w=w, c=c):
                return self.products.products(w[rows], vectors, None if c is None else c[rows])

            result = lanczos(matvec, np.broadcast_to(start, w.shape), steps, tol=self.tol,
                             basis_dtype=basis)
            top[lo:lo + group], bottom[lo:lo + group] = extreme_eigenvalues(result)
        values = {"hessian_max": top, "hessian_min": bottom}
        return {name: values[name] for name in self.names}

