"""``kind: pca``: the principal components of the recorded training path."""

from __future__ import annotations

from dataclasses import dataclass

from ..config.schema import DirectionConfig, must
from ..core.directions import TrajectoryPCA, bias_mask
from ..core.plane import Plane
from ..errors import LandscapeError
from .base import PlaneKind


@dataclass(frozen=True)
class PCADirections(DirectionConfig):
    """Settings of the PCA plane: ``around``, the training run whose end point the differences
    are taken from (with ``train.runs``; 0 otherwise)."""

    around: int = 0

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.around, bool) or not isinstance(self.around, int) or self.around < 0:
            raise must("around", "an integer >= 0 (a training run)", self.around)


class PCAPlane(PlaneKind):
    """The first components of ``w_i - w_T`` over the recorded path (biases and norms left out
    with ``ignore: biasbn``); explained-variance ratios in the metadata. Unit-norm directions.
    With several training runs, the differences of every run's checkpoints from the end of run
    ``around``."""

    config = PCADirections
    needs_path = True
    fits_path = True
    summary_keys = ("kind", "cosine", "explained_variance_ratio")

    def caption(self, meta):
        return "PCA of the training path, explained variance " + " / ".join(
            f"{100 * v:.1f}%" for v in meta.get("explained_variance_ratio", []))

    def axis_labels(self, meta, ndim, short=False):
        if short:
            return [f"PC {i + 1}" for i in range(ndim)]
        evr = meta.get("explained_variance_ratio", [0, 0])
        return [f"PC {i + 1} ({100 * evr[i]:.1f}%)" for i in range(ndim)]

    def draws_path(self, meta):
        return True  # the plane the path's own principal components span

    def build(self, cfg, context, k):
        if context.path is None:
            raise LandscapeError("The {kind} is 'pca', which needs a recorded training path. "
                                 "Record one first ({train}) or use kind: random.",
                                 kind="'kind' parameter", train="train()")
        mask = bias_mask(context.layout, context.filters) if cfg.ignore == "biasbn" else None
        paths = [context.path, *context.more_paths]
        around = cfg.around
        if around >= len(paths):
            raise LandscapeError(f"The {{around}} is {around}, but {len(paths)} training run(s) "
                                 f"were recorded (0 to {len(paths) - 1}).",
                                 around="'around' parameter")
        pca = TrajectoryPCA(n_components=k, mask=mask).fit(
            paths[around], *(p for i, p in enumerate(paths) if i != around))
        meta = self.common_meta(cfg, context.centre)
        meta["explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
        meta["checkpoints_used"] = pca.n_finite_
        meta["paths"] = len(paths)
        meta["around"] = around
        meta["normalization"] = "none"
        return Plane.make(context.centre, pca.components_, context.layout, meta)
