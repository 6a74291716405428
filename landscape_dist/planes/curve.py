"""``kind: curve``: a curve between two models along which the loss stays low (Garipov et al.
2018, mode connectivity), and the plane through its ends and its bend.

The curve runs from A (t = 0) to B (t = 1) through a bend trained on the training data
(a quadratic Bezier curve or a polychain, see :mod:`landscape_dist.core.curves`); the plane is
the ``models`` kind's plane through A, B and the bend, on which both curves lie exactly. The
slice's grid covers that plane; the curve and the straight line A -> B are evaluated beside it at
``points`` values of t (:meth:`CurvePlane.curves`). Batch-norm statistics are re-estimated at
every point (``batchnorm: recompute``, the default) where the model has batch normalisation.

Training the bend is the sweep's (``PlaneContext.bend``): this kind names its settings and
builds the plane from the bend it is given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.schema import must
from ..config.rules import is_int
from ..core.curves import BENDS, curve_coordinates, line_coordinates
from ..errors import LandscapeError
from .between import COLLINEAR, BetweenModels, ModelsPlane, refuse_same

CURVE_BATCHNORM = ("recompute", "centre")
MAX_CURVE_BYTES = 4 << 30  # both curves' weight vectors (float64 and float32), at most
BEND = "bend"  # the bend's name among the plane's models


@dataclass(frozen=True)
class CurveConfig(BetweenModels):
    """Settings of ``kind: curve``: the two end models, the curve's shape (``bend``), the points
    along t, and how the bend is trained; a training setting left out (null) is the
    configuration's ``train`` section's. ``seed`` seeds the shuffling and the t drawn per batch;
    ``bend_file``: where the trained bend is saved (null: ``bend-<bend>-<digest>.h5`` in the
    output directory, the digest of what decides it)."""

    bend: str = "bezier"
    points: int = 21
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    learning_rate: float | None = None
    bend_file: str | None = None
    batchnorm: str = "recompute"

    def __post_init__(self):
        if self.batchnorm not in CURVE_BATCHNORM:  # before the base's check, which allows more
            raise must("batchnorm", f"one of {CURVE_BATCHNORM} (statistics are re-estimated "
                       f"along the curve, or held at A's)", self.batchnorm)
        super().__post_init__()
        if len(self.models) != 2:
            raise must("models", "a list of 2 models, the curve's ends (.keras or .weights.h5 "
                                 "files, or 'path:0', 'path:-1' for checkpoints of the training "
                                 "path)", list(self.models))
        if self.bend not in BENDS:
            raise must("bend", f"one of {BENDS}", self.bend)
        if not is_int(self.points) or self.points < 2:
            raise must("points", "an integer >= 2 (values of t from 0 to 1)", self.points)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                raise must(name, "an integer >= 1, or null (the train section's)", value)
        if self.learning_rate is not None and not (
                isinstance(self.learning_rate, (int, float)) and not isinstance(
                    self.learning_rate, bool) and self.learning_rate > 0):
            raise must("learning_rate", "a number > 0, or null (the train section's)",
                       self.learning_rate)
        if self.optimizer is not None and not (isinstance(self.optimizer, str) and self.optimizer):
            raise must("optimizer", "the name of a Keras optimizer such as 'adam' or 'sgd', or "
                       "null (the train section's)", self.optimizer)
        if self.bend_file is not None and not (isinstance(self.bend_file, str) and self.bend_file):
            raise must("bend_file", "a file path, or null (a file in the output directory)",
                       self.bend_file)

    def check_for(self, size: int) -> None:
        """Refuse more values of t than the weight vectors of both curves (``points`` x ``size``
        each, made in float64 and sent in float32) hold in :data:`MAX_CURVE_BYTES`; asked once
        the model is known, before the bend is trained."""
        need = 2 * self.points * size * (8 + 4)
        if need > MAX_CURVE_BYTES:
            most = MAX_CURVE_BYTES // (2 * size * 12)
            raise must("points", f"small enough that both curves' weight vectors (2 x points x "
                       f"{size} weights x 12 bytes = {need / 2 ** 30:.3g} GiB) fit in "
                       f"{MAX_CURVE_BYTES >> 30} GiB", self.points,
                       f"Use at most {most} points.")

    def preparation(self, train) -> dict:
        """The bend's training (``epochs``, the train section's where left out; none where a
        saved bend is reused) and both curves' points."""
        return {"epochs": train.epochs if self.epochs is None else self.epochs,
                "points": 2 * self.points, "what": "the bend's training"}


class CurvePlane(ModelsPlane):
    """The plane through A, B and the trained bend (A at (0, 0), B at (1, 0), the bend at
    ``bend_coords``), with the curve and the line A -> B on it."""

    config = CurveConfig
    shape = "plane"
    summary_keys = ("kind", "cosine", "bend", "bend_coords", "bend_training")

    def caption(self, meta):
        ends = " to ".join(Path(r).name for r in meta.get("models", []))
        return (f"{meta.get('bend')} curve from {ends} and the plane through its bend; batch-norm "
                f"statistics: {meta.get('batchnorm')}")

    def curves(self, meta):
        t = np.linspace(0.0, 1.0, int(meta["t_points"]))
        return {"curve": (t, curve_coordinates(meta["bend"], t, meta["bend_coords"])),
                "line": (t, line_coordinates(t))}

    def build(self, cfg, context, k):
        if context.bend is None:
            raise LandscapeError("The {kind} trains its bend on the model and its data; build "
                                 "the plane through sweep().", kind="'kind' parameter")
        (a, nt_a), (b, nt_b) = self._load(cfg, context)
        refuse_same(cfg.models[0], a, cfg.models[1], b, "a curve")
        theta, training = context.bend(cfg, a, b)
        theta = np.asarray(theta, np.float64)
        d0 = b - a
        off = theta - a - float((theta - a) @ d0 / (d0 @ d0)) * d0
        if np.linalg.norm(off) <= COLLINEAR * max(np.linalg.norm(theta - a), np.finfo(float).tiny):
            raise LandscapeError(f"The bend trained in '{training['file']}' lies on the line "
                                 f"through A and B, so the curve is that line and spans no plane. "
                                 f"Train it for more epochs or with a larger learning rate ("
                                 f"{{directions}}).", directions="curve's settings")
        plane = self._through(cfg, [*cfg.models, BEND], [(a, nt_a), (b, nt_b), (theta, nt_a)],
                              context.layout)
        coords = plane.meta["model_coords"]
        meta = {**plane.meta, "bend": cfg.bend, "bend_coords": coords[BEND],
                "t_points": cfg.points, "bend_training": training}
        recompute = plane.recompute if context.non_trainable else None  # no statistics to estimate
        return dataclasses.replace(plane, meta=meta, recompute=recompute)
