"""Curves between minima (``kind: curve``) in a sweep: the bend trained (or reused) while the
sweep is prepared (:class:`BendTrainer`, the planes' ``PlaneContext.bend``), and the curve and
the straight line evaluated on the pool beside the slice's grid (:func:`sweep_curves`)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import numpy as np

from ..config.schema import Config
from ..core.curves import barrier
from ..core.quantities import main_loss
from ..errors import in_terms
from ..model.curve import BendTraining, bend_key, train_bend
from ..model.sources import DataSpec
from ..planes.base import kind_of

log = logging.getLogger("landscape_dist")


class BendTrainer:
    """``(settings, A, B) -> (bend (size,), what training did)``: trains the bend of a curve
    slice on the configuration's training data (its first dataset where it names several, as
    ``train`` does), its settings left out taken from the ``train`` section; saved in the
    slice's ``bend_file`` or in ``out``, and reused from there when it matches."""

    def __init__(self, config: Config, out: Path, model, progress: bool = True):
        self.config, self.out, self.model, self.progress = config, Path(out), model, progress
        self._data = None

    def _training_data(self):
        if self._data is None:
            datasets = self.config.data.datasets
            source = next(iter(datasets.values())) if datasets else self.config.data.source
            self._data = DataSpec(source).load()
        return self._data

    def settings(self, cfg) -> BendTraining:
        """The training settings of the curve settings ``cfg``, the train section's where
        ``cfg`` leaves one out."""
        train = self.config.train
        pick = lambda own, default: default if own is None else own  # noqa: E731
        return BendTraining(cfg.bend, pick(cfg.epochs, train.epochs),
                            pick(cfg.batch_size, train.batch_size),
                            pick(cfg.optimizer, train.optimizer),
                            float(pick(cfg.learning_rate, train.learning_rate)), cfg.seed)

    def __call__(self, cfg, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, dict]:
        x, y = self._training_data()
        training = self.settings(cfg)
        model_id = hashlib.sha256(repr(self.config.model.source).encode()).hexdigest()
        key = bend_key(training, np.asarray(a, np.float32), np.asarray(b, np.float32), x, y,
                       model_id)
        path = (Path(cfg.bend_file) if cfg.bend_file
                else self.out / f"bend-{training.bend}-{key[:12]}.h5")
        # an optimizer from the train section is named there; the curve's own by the caller
        words = {} if cfg.optimizer is not None else {"optimizer": "'train.optimizer' setting"}
        with in_terms(words):
            theta, info = train_bend(self.model, a, b, x, y, training, path, key, self.progress)
        return theta, {**info, **dataclasses.asdict(training)}


def warn_off_grid(plan, where: str) -> None:
    """Say so where a curve the plane's kind lays on it (see ``PlaneKind.curves``) leaves the
    slice's grid (``plan.xs``, ``plan.ys``; ``where``: the grid's settings): the curves are
    still evaluated, but the grid misses the loss around them and the figures draw them past
    the contours. The warning names the range that holds them."""
    if plan.plane is None or plan.ys is None:
        return
    curves = kind_of(plan.plane.meta).curves(plan.plane.meta)
    if not curves:
        return
    coords = np.concatenate([np.asarray(c, np.float64) for _, c in curves.values()])
    low, high = coords.min(axis=0), coords.max(axis=0)
    grid_low = np.array([plan.xs.min(), plan.ys.min()])
    grid_high = np.array([plan.xs.max(), plan.ys.max()])
    slack = 1e-9 * np.maximum(1.0, grid_high - grid_low)
    if (low >= grid_low - slack).all() and (high <= grid_high + slack).all():
        return
    log.warning("slice '%s': its curves run over x %.3g..%.3g, y %.3g..%.3g, beyond the grid "
                "(x %.3g..%.3g, y %.3g..%.3g): the loss around them is not swept. Widen %s.x "
                "and %s.y to hold them.", plan.name, low[0], high[0], low[1], high[1],
                grid_low[0], grid_high[0], grid_low[1], grid_high[1], where, where)


def sweep_curves(plane, pool, writer, evaluate_weights) -> dict:
    """Evaluate the curves the plane's kind lays on it (see ``PlaneKind.curves``) on ``pool``
    with the quantities it has selected, at their flat weights ``centre + coords @
    directions``; store each under the slice (``writer.write_curve``) with its barrier on every
    dataset's loss; returns what the slice's summary adds: ``barrier`` (each curve's, on the
    main loss, named by ``barrier_on``) and, for several datasets, ``barriers`` (by loss).
    ``evaluate_weights(pool, weights)``: the values at weight vectors (T, size)."""
    curves = kind_of(plane.meta).curves(plane.meta)
    if not curves:
        return {}
    losses = [n for n in pool.names if n == "loss" or n.endswith("/loss")]
    main = main_loss(pool.names)
    centre = np.asarray(plane.centre, np.float64)
    directions = np.asarray(plane.directions, np.float64)
    barriers = {}
    for name, (t, coords) in curves.items():
        weights = (centre[None] + np.asarray(coords, np.float64) @ directions).astype(np.float32)
        values = evaluate_weights(pool, weights)
        heights = {q: barrier(values[q]) for q in losses}
        peak = int(np.nanargmax(values[main])) if np.isfinite(values[main]).any() else None
        writer.write_curve(name, t, coords, values, {
            "barrier": heights, "t_of_max": None if peak is None else float(t[peak]),
            "kind": "evaluated at every t (loss and metrics)"})
        barriers[name] = heights
    info = {"barrier": {name: heights[main] for name, heights in barriers.items()},
            "barrier_on": main, "curve_points": int(len(next(iter(curves.values()))[0]))}
    if len(losses) > 1:
        info["barriers"] = {q: {name: heights[q] for name, heights in barriers.items()}
                            for q in losses}
    writer.write_attr("barriers", {q: {name: heights[q] for name, heights in barriers.items()}
                                   for q in losses})
    return info
