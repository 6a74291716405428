"""``kind: hessian``: the Hessian's eigenvectors at the centre as the slice's directions.

``which`` names them: ``top1``, ``top2``... (by eigenvalue, largest first) and ``min`` (the
smallest, most negative eigenvalue). They are computed once, by Lanczos on Hessian products the
workers compute (:mod:`landscape_dist.core.curvature`), scaled by the slice's normalisation (``none``
by default: unit eigenvectors, so a grid unit is a unit of distance in weight space; ``model``
keeps them eigenvectors too, at the centre's norm) and stored with their eigenvalues.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..config.schema import CurvatureConfig, DirectionConfig, must
from ..core.directions import default_filter_rules, normalize_direction
from ..core.plane import Plane
from ..errors import LandscapeError
from .base import PlaneKind

_WHICH = re.compile(r"top([1-9][0-9]*)|min")


@dataclass(frozen=True)
class HessianDirections(DirectionConfig):
    """Settings of Hessian directions: ``which`` eigenvectors, one per grid dimension."""

    normalization: str = "none"
    ignore: str = "none"
    which: tuple[str, ...] = ("top1", "top2")

    def __post_init__(self):
        super().__post_init__()
        which = list(self.which)
        if not which or len(which) > 2 or len(set(which)) != len(which) or not all(
                isinstance(w, str) and _WHICH.fullmatch(w) for w in which):
            raise must("which", "one or two distinct names of eigenvectors: 'top1', 'top2'... "
                       "(largest eigenvalues first) or 'min' (the smallest)", which)

    def check_for(self, size: int) -> None:
        """Refuse an eigenvector the model's Hessian (``size`` x ``size``) does not have."""
        if self.top_k > size:
            raise must("which", f"eigenvectors the model has: 'top1' to 'top{size}' or 'min' (it "
                       f"has {size} weights)", list(self.which))

    @property
    def top_k(self) -> int:
        """How many of the largest eigenpairs are needed."""
        return max([int(w[3:]) for w in self.which if w != "min"] or [1])


class HessianPlane(PlaneKind):
    """Eigenvectors of the Hessian of the grid's loss at the centre (Lanczos on the workers'
    products), ``which`` of them, each of unit norm with a fixed sign before normalisation."""

    config = HessianDirections
    needs_products = True
    summary_keys = ("kind", "cosine", "which", "eigenvalues", "converged")

    def caption(self, meta):
        return (f"Hessian eigenvectors {', '.join(meta.get('which', []))} at the centre, "
                f"{meta.get('normalization')} normalisation"
                + ("" if meta.get("converged", True) else " (Lanczos not converged)"))

    def axis_labels(self, meta, ndim, short=False):
        labels = [f"Hessian eigenvector {w} (eigenvalue {v:.4g})"
                  for w, v in zip(meta.get("which", []), meta.get("eigenvalues", []))]
        default = super().axis_labels(meta, ndim)
        return default if short else [labels[i] if i < len(labels) else default[i]
                                      for i in range(ndim)]

    def build(self, cfg, context, k):
        from ..core.curvature import centre_eigen

        if len(cfg.which) != k:
            raise LandscapeError(f"A {k}-D slice needs {k} Hessian directions; 'which' names "
                                 f"{len(cfg.which)} ({list(cfg.which)}). Name one per grid "
                                 f"dimension in the {{kind}}'s 'which'.", kind="'kind' parameter")
        if context.products is None:
            raise LandscapeError("Hessian directions are built from the workers' products, once "
                                 "the pool runs (see landscape_dist.sweeping.inputs.build_deferred).")
        settings = context.curvature or CurvatureConfig()
        top_k = min(max(cfg.top_k, 1), context.layout.size)
        if settings.steps <= top_k:
            raise LandscapeError(f"The Hessian direction '{max(cfg.which)}' needs more Lanczos "
                                 f"steps than curvature.steps={settings.steps}. Raise "
                                 f"curvature.steps.")
        settings = CurvatureConfig(**{**settings.__dict__, "top_k": top_k})
        eigen = centre_eigen(context.products, context.layout.size, settings,
                             np.random.default_rng(settings.seed))
        found = len(eigen.top_values)
        if cfg.top_k > found:  # the Krylov space ended early: repeated eigenvalues
            raise LandscapeError(f"The Hessian direction 'top{cfg.top_k}' is not among the "
                                 f"{found} distinct top eigenvalues Lanczos found (the Hessian "
                                 f"repeats eigenvalues). Name one of 'top1' to 'top{found}' or "
                                 f"'min' in the {{kind}}'s 'which'.", kind="'kind' parameter")
        vectors, values = [], []
        for name in cfg.which:
            if name == "min":
                vectors.append(eigen.min_vector)
                values.append(eigen.min_value)
            else:
                vectors.append(eigen.top_vectors[int(name[3:]) - 1])
                values.append(float(eigen.top_values[int(name[3:]) - 1]))
        return self._plane(cfg, context, np.array(vectors), values, {
            "lanczos_steps": eigen.steps, "converged": eigen.converged,
            "residuals": [float(r) for r in np.append(eigen.top_residuals, eigen.min_residual)],
            "top_eigenvalues": [float(v) for v in eigen.top_values],
            "min_eigenvalue": float(eigen.min_value)})

    def _plane(self, cfg, context, unit_vectors, eigenvalues, extra: dict) -> Plane:
        filters = context.filters or default_filter_rules(context.layout)
        directions = np.stack([normalize_direction(v, context.centre, context.layout,
                                                   cfg.normalization, cfg.ignore, filters)
                               for v in unit_vectors])
        return Plane.make(context.centre, directions, context.layout,
                          self._meta(cfg, context, eigenvalues, extra))

    def _meta(self, cfg, context, eigenvalues, extra: dict) -> dict:
        return {**self.common_meta(cfg, context.centre), "which": list(cfg.which),
                "eigenvalues": [float(v) for v in eigenvalues], **extra}

    _KEPT = ("eigenvalues", "lanczos_steps", "converged", "residuals", "top_eigenvalues",
             "min_eigenvalue")

    def to_store(self, plane):
        return {"directions": plane.directions, "meta": {k: plane.meta[k] for k in self._KEPT}}

    def from_stored(self, cfg, context, stored):
        meta = dict(stored["meta"])
        return Plane.make(context.centre, stored["directions"], context.layout,
                          self._meta(cfg, context, meta.pop("eigenvalues"), meta))
