"""Quantity kinds: what a worker computes at each point, registered under their configuration name.

A kind is built on a worker's :class:`~landscape_dist.model.evaluator.LandscapeEvaluator`,
describes its parts once (:class:`~landscape_dist.core.quantities.QuantitySet`: names and how
shards combine them) and computes them for a batch of points or weight vectors. A worker may hold
several kinds; their parts are merged, and the pool combines shards by the merged description.
A new kind (another dataset's loss, Hessian eigenvalues) is one class registered here.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..core.quantities import POINTS, WEIGHTS, Part, QuantitySet
from ..registry import QUANTITIES


class QuantityKind:
    """Base of the quantity kinds: built on an evaluator, describes and computes its parts.

    The class attributes say what the layers above ask of a kind, without building it: the
    sweep whether it may run on shards of the data or with re-estimated statistics, the summary
    and the figures what to show of it."""

    combines_over_shards: bool = True
    """Its parts from shards of the data combine exactly into the whole data's."""
    why_not_over_shards: str = ""
    """Why not, when they do not (said in the refusal of ``data.shards > 1``)."""
    needs_given_statistics: bool = False
    """It needs the batch-norm statistics as given (not re-estimated at every point)."""
    why_given_statistics: str = ""
    """Why, when it does (said in the refusal of re-estimated statistics)."""
    summary_range: bool = False
    """The sweep's summary gives the range of its values, ``<name>_range``: [min, max]."""
    drawn_together: tuple[str, ...] = ()
    """Names of its quantities drawn as one figure of their own rather than as filled contours
    each (the eigen map); empty: each is drawn like the loss."""

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


def kind_of_quantity(name: str) -> type[QuantityKind]:
    """The kind a stored quantity's name belongs to (``hessian_max``, or ``train/hessian_max``
    per dataset); the base class, whose answers fit the loss and metrics, for a name no kind
    was registered under in this process (a metric, a kind registered elsewhere)."""
    base = name.rsplit("/", 1)[-1]
    return QUANTITIES[base] if base in QUANTITIES else QuantityKind


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


class LanczosSettings(Protocol):
    """What :class:`HessianExtremes` reads of the evaluation settings
    (:class:`~landscape_dist.config.EvaluationConfig` has them, with their defaults)."""

    lanczos_steps: int  # at most this many Hessian-vector products per point
    lanczos_tol: float  # until the extreme Ritz values' residuals are this relative
    lanczos_seed: int  # the start vector of every point's run


class HessianExtremes(QuantityKind):
    """``hessian_max`` and ``hessian_min``: the largest and the smallest (most negative)
    eigenvalue of the Hessian in the full weight space at every point, by Lanczos runs that
    advance together for the points of a job (one compiled product call per step, within the
    memory budget). ``settings``: the evaluation settings (:class:`LanczosSettings`)."""

    combines_over_shards = False
    why_not_over_shards = "every Lanczos step needs the whole product"
    needs_given_statistics = True
    why_given_statistics = "differentiate the loss with the batch-norm statistics as given"
    summary_range = True
    drawn_together = ("hessian_max", "hessian_min")

    def __init__(self, evaluator, names: tuple[str, ...], settings: LanczosSettings):
        if settings is None:
            raise TypeError("The 'settings' parameter of HessianExtremes must be the evaluation "
                            "settings (lanczos_steps, lanczos_tol, lanczos_seed). Got None "
                            "instead.")
        super().__init__(evaluator, names, settings)
        from .hessian import HessianProducts  # TensorFlow only where a worker runs

        self.products = HessianProducts(evaluator, evaluator.mode)
        self.steps = settings.lanczos_steps
        self.tol = settings.lanczos_tol
        self.seed = settings.lanczos_seed

    def describe(self):
        return QuantitySet(tuple(Part(name, "mean") for name in self.names))

    def check_shardable(self):
        raise ValueError(f"The Hessian's eigenvalues at a point cannot be combined from shards of "
                         f"the data ({self.why_not_over_shards}).")

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
        moving = coords is not None and ev.statistics_move
        size = weights.shape[1]
        # the same seeded start at every point: a point's value does not depend on its job
        start = np.random.default_rng(self.seed).standard_normal(size)
        steps = min(self.steps, size)
        basis = np.float32 if ev.dtype.size <= 4 else np.float64  # as precise as the products
        per_point = np.dtype(basis).itemsize * (steps + 2) * size  # the Lanczos basis's bytes
        group = max(1, int(ev.memory_budget_bytes // per_point))
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

