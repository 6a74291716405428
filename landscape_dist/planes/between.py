"""Planes between trained models: ``kind: interpolate`` (the line from A to B, Goodfellow et al.
2015) and ``kind: models`` (the plane through A, B and C, Garipov et al. 2018).

Models are named by reference: a ``.keras`` or ``.weights.h5`` file, or a checkpoint of the
recorded training path (``path:0``, ``path:-1``). Batch-norm statistics (``batchnorm``) are held
at A's (``centre``), move with the weights (``interpolate``, Li et al.'s ``states``), so that
each model is met with its own statistics at its coordinates, or are re-estimated at every point
on the first ``calibration`` examples (``recompute``, Garipov et al.'s ``update_bn``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.schema import DirectionConfig, must
from ..core.plane import Plane
from ..errors import LandscapeError
from .base import PlaneKind

BATCHNORM = ("centre", "interpolate", "recompute")
# a checkpoint of a recorded training path: 'path:<i>' (run 0) or 'run<r>:<i>'
CHECKPOINT = re.compile(r"^(path|run(\d+)):(-?\d+)$")


@dataclass(frozen=True)
class BetweenModels(DirectionConfig):
    """Settings of the kinds between models: the models (references) and how batch-norm
    statistics behave between them."""

    normalization: str = "none"
    ignore: str = "none"
    models: tuple[str, ...] = ()
    batchnorm: str = "centre"
    unused = ("normalization", "ignore")
    unused_why = "its directions are the differences between the models"
    calibration: int = 1024  # recompute: examples the statistics are re-estimated on

    def __post_init__(self):
        super().__post_init__()
        count = {"interpolate": 2, "models": 3}.get(self.kind)
        if count is not None and len(self.models) != count:
            raise must("models", f"a list of {count} models (.keras or .weights.h5 files, or "
                                 f"'path:0', 'path:-1' for checkpoints of the training path)",
                       list(self.models))
        if self.batchnorm not in BATCHNORM:
            raise must("batchnorm", f"one of {BATCHNORM}", self.batchnorm)
        if isinstance(self.calibration, bool) or not isinstance(self.calibration, int) \
                or self.calibration < 1:
            raise must("calibration", "an integer >= 1 (examples)", self.calibration)


# |B - A| at most this fraction of the larger of |A|, |B|: the same model (its differences are
# the rounding of a copy, or none)
SAME = 1e-6
# the part of C - A off the line through A and B, relative to |C - A|, at most this: collinear
COLLINEAR = 1e-5


def refuse_same(ref_a: str, a: np.ndarray, ref_b: str, b: np.ndarray, what: str) -> None:
    """Refuse models A and B whose weights are the same up to rounding (see :data:`SAME`)."""
    gap = float(np.linalg.norm(b - a))
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    if gap <= SAME * scale:
        raise LandscapeError(f"The {{models}} names {ref_a!r} and {ref_b!r}, which hold the same "
                             f"weights (|B - A| = {gap:.3g}, at most {SAME:g} of their norm "
                             f"{scale:.3g}); {what} needs two different models. Name two "
                             f"different models.", models="'models' parameter")


class _BetweenModels(PlaneKind):
    config = BetweenModels
    shape = ""  # what the models span, as the caption names it

    def caption(self, meta):
        return (f"{self.shape} through {', '.join(Path(r).name for r in meta.get('models', []))}; "
                f"batch-norm statistics: {meta.get('batchnorm')}")

    def uses_path(self, cfg):
        return any(CHECKPOINT.match(ref) for ref in cfg.models)

    def _load(self, cfg, context):
        """(flat weights, non-trainable values) of each model, in float64."""
        if context.resolve_model is None:
            raise LandscapeError("The {kind} needs the model's weights to be loadable; build the "
                                 "plane through sweep().", kind="'kind' parameter")
        loaded = []
        for ref in cfg.models:
            flat, non_trainable = context.resolve_model(ref)
            if non_trainable is None:  # a checkpoint of the path: its statistics were not recorded
                non_trainable = context.non_trainable
            loaded.append((np.asarray(flat, np.float64),
                           [np.asarray(v, np.float64) for v in non_trainable or []]))
        return loaded

    @staticmethod
    def _meta(cfg, centre, coords, refs=None):
        refs = cfg.models if refs is None else refs  # the models' names, as the figures mark them
        return {"kind": cfg.kind, "normalization": "none", "ignore": "none", "seed": cfg.seed,
                "centre_norm": float(np.linalg.norm(centre)), "models": list(cfg.models),
                "model_coords": {ref: [float(c) for c in xy] for ref, xy in zip(refs, coords)},
                "batchnorm": cfg.batchnorm,
                **({"calibration": cfg.calibration} if cfg.batchnorm == "recompute" else {})}

    @staticmethod
    def _recomputing(cfg, plane: Plane) -> Plane:
        if cfg.batchnorm != "recompute":
            return plane
        return dataclasses.replace(plane, recompute=cfg.calibration)

    @staticmethod
    def _statistics(cfg, nts, coefficients):
        """Non-trainable directions: each a combination of the models' statistics."""
        if cfg.batchnorm != "interpolate" or not nts[0]:
            return None
        return [[sum(c * nt[i] for c, nt in zip(row, nts)) for i in range(len(nts[0]))]
                for row in coefficients]


class InterpolatePlane(_BetweenModels):
    """The line ``A + x (B - A)``: A at x = 0, B at x = 1 (x may run outside [0, 1])."""

    dims = (1,)
    shape = "line"

    def build(self, cfg, context, k):
        (a, nt_a), (b, nt_b) = self._load(cfg, context)
        refuse_same(cfg.models[0], a, cfg.models[1], b, "an interpolation")
        meta = self._meta(cfg, a, [[0.0], [1.0]])
        stats = self._statistics(cfg, [nt_a, nt_b], [[-1.0, 1.0]])
        return self._recomputing(cfg, Plane.make(a, (b - a)[None], context.layout, meta, nt_a, stats))


class ModelsPlane(_BetweenModels):
    """The plane through A, B, C: centre A, ``d0 = B - A`` and ``d1`` the part of ``C - A``
    orthogonal to it (scaled to ``|d0|``), so B sits at (1, 0) and C at (cx, cy)."""

    dims = (2,)
    shape = "plane"

    def build(self, cfg, context, k):
        return self._through(cfg, cfg.models, self._load(cfg, context), context.layout)

    def _through(self, cfg, refs, loaded, layout) -> Plane:
        """The plane through the models ``refs`` (three names), ``loaded`` as :meth:`_load`
        gives them."""
        (a, nt_a), (b, nt_b), (c, nt_c) = loaded
        refuse_same(refs[0], a, refs[1], b, "a plane")
        d0 = b - a
        norm0 = np.linalg.norm(d0)
        cx = float((c - a) @ d0 / norm0 ** 2)
        orth = (c - a) - cx * d0
        off = float(np.linalg.norm(orth) / max(np.linalg.norm(c - a), np.finfo(float).tiny))
        if off <= COLLINEAR:
            raise LandscapeError(f"The {{models}} names three models on one line (the part of C - "
                                 f"A off the line through A and B is {off:.3g} of |C - A|, at most "
                                 f"{COLLINEAR:g}); a plane needs C off that line. Name a C that is "
                                 f"not on the line through {refs[0]!r} and {refs[1]!r}.",
                                 models="'models' parameter")
        d1 = orth / np.linalg.norm(orth) * norm0
        cy = float(np.linalg.norm(orth) / norm0)
        meta = self._meta(cfg, a, [[0.0, 0.0], [1.0, 0.0], [cx, cy]], refs)
        # statistics: A + x (B - A) + y (C - A - cx (B - A)) / cy meets each model's own
        stats = self._statistics(cfg, [nt_a, nt_b, nt_c],
                                 [[-1.0, 1.0, 0.0], [(cx - 1.0) / cy, -cx / cy, 1.0 / cy]])
        return self._recomputing(cfg, Plane.make(a, np.stack([d0, d1]), layout, meta, nt_a, stats))
