"""``kind: pca``: the principal components of the recorded training path."""

from __future__ import annotations

from ..core.directions import TrajectoryPCA, bias_mask
from ..core.plane import Plane
from ..errors import LandscapeError
from . import PLANE_KINDS, PlaneKind


@PLANE_KINDS.register("pca")
class PCAPlane(PlaneKind):
    """The first components of ``w_i - w_T`` over the recorded path (biases and norms left out
    with ``ignore: biasbn``); explained-variance ratios in the metadata. Unit-norm directions."""

    needs_path = True
    fits_path = True

    def build(self, cfg, context, k):
        if context.path is None:
            raise LandscapeError("The {kind} is 'pca', which needs a recorded training path. "
                                 "Record one first ({train}) or use kind: random.",
                                 kind="'kind' parameter", train="train()")
        mask = bias_mask(context.layout, context.filters) if cfg.ignore == "biasbn" else None
        pca = TrajectoryPCA(n_components=k, mask=mask).fit(context.path, *context.more_paths)
        meta = self.common_meta(cfg, context.centre)
        meta["explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
        meta["checkpoints_used"] = pca.n_finite_
        meta["paths"] = 1 + len(context.more_paths)
        meta["normalization"] = "none"
        return Plane.make(context.centre, pca.components_, context.layout, meta)
