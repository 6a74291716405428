"""Direction vectors for a slice: seeded random with normalisation, or PCA of a trajectory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import LandscapeError
from .layout import WeightLayout


@dataclass(frozen=True)
class FilterRule:
    """Which axes of a weight tensor index its filters, and a name for the rule.

    A filter is the set of weights that produce one output unit or map (Li et al.): the entries
    sharing one index along ``axes``. ``axes == ()``: the whole tensor is one piece.
    """

    axes: tuple[int, ...]
    rule: str
    bias: bool = False  # a bias or normalisation parameter: zeroed by ``ignore: biasbn``

    @classmethod
    def last_axis(cls, ndim: int, rule: str = "last axis") -> "FilterRule":
        return cls((ndim - 1,), rule) if ndim >= 2 else cls((), "whole tensor", bias=True)


def default_filter_rules(layout: WeightLayout) -> tuple[FilterRule, ...]:
    """The rule when nothing is known of the layers: the last axis of every tensor with >= 2
    dimensions (Dense and Conv kernels); tensors with fewer are biases or normalisation
    parameters, one piece each."""
    return tuple(FilterRule.last_axis(len(shape)) for shape in layout.shapes)


def bias_mask(layout: WeightLayout, filters: tuple[FilterRule, ...] | None = None) -> np.ndarray:
    """Boolean (size,): True on the entries of biases and normalisation parameters (by
    ``filters``; by default the tensors with at most one dimension)."""
    if filters is None:
        return layout.low_rank_mask()
    mask = np.zeros(layout.size, dtype=bool)
    off = layout.offsets
    for i, rule in enumerate(filters):
        if rule.bias:
            mask[off[i]:off[i + 1]] = True
    return mask


def filter_norms(tensor: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The norm of each filter of ``tensor``: shape ``tensor.shape[axes]`` (() for no axes)."""
    tensor = np.asarray(tensor, dtype=np.float64)
    if not axes:
        return np.asarray(np.linalg.norm(tensor))
    moved = np.moveaxis(tensor, axes, range(len(axes)))
    lead = moved.shape[:len(axes)]
    return np.linalg.norm(moved.reshape(int(np.prod(lead)), -1), axis=1).reshape(lead)


def _scale_filters(d: np.ndarray, w: np.ndarray, axes: tuple[int, ...]) -> None:
    """Scale each filter of ``d`` (in place) to the norm of the same filter of ``w``."""
    if not axes:
        d *= _ratio(np.linalg.norm(w), np.linalg.norm(d))
        return
    ratio = _ratio(filter_norms(w, axes), filter_norms(d, axes))
    moved = np.moveaxis(d, axes, range(len(axes)))  # a view of d
    moved *= ratio.reshape(ratio.shape + (1,) * (moved.ndim - len(axes)))


def normalize_direction(direction: np.ndarray, centre: np.ndarray, layout: WeightLayout,
                        normalization: str = "filter", ignore: str = "biasbn",
                        filters: tuple[FilterRule, ...] | None = None) -> np.ndarray:
    """Rescale ``direction`` piece by piece to the norm of the matching piece of ``centre``.

    ``filter``: each filter of each tensor, as ``filters`` (one :class:`FilterRule` per tensor of
    the layout) says; by default the last axis of tensors with >= 2 dims (Dense/Conv output
    units), the whole tensor otherwise. ``layer``: each tensor; ``model``: the whole vector;
    ``none``: unchanged. Biases and normalisation parameters (rules with ``bias``) are zeroed
    when ``ignore == 'biasbn'``.
    Returns a new (size,) float32 array.
    """
    out = np.array(direction, dtype=np.float64)
    centre = np.asarray(centre, dtype=np.float64)
    if filters is None:
        filters = default_filter_rules(layout)
    if len(filters) != len(layout.shapes):
        raise ValueError(f"The 'filters' parameter must hold one rule per tensor of the layout "
                         f"({len(layout.shapes)}). Got {len(filters)} instead.")
    if normalization == "model":
        out *= _ratio(np.linalg.norm(centre), np.linalg.norm(out))
    elif normalization in ("filter", "layer"):
        for d, w, rule in zip(layout.unflatten(out), layout.unflatten(centre), filters):
            _scale_filters(d, w, rule.axes if normalization == "filter" else ())
    elif normalization != "none":
        raise ValueError(f"The 'normalization' parameter must be one of filter, layer, model, none. "
                         f"Got {normalization!r} instead.")
    if ignore == "biasbn":
        out[bias_mask(layout, filters)] = 0.0
    return out.astype(np.float32)


def _ratio(target, current):
    current = np.asarray(current, dtype=np.float64)
    return np.divide(target, current, out=np.zeros_like(current), where=current > 0)


def random_directions(centre: np.ndarray, layout: WeightLayout, n_directions: int,
                      rng: np.random.Generator, normalization: str = "filter",
                      ignore: str = "biasbn", filters: tuple[FilterRule, ...] | None = None
                      ) -> np.ndarray:
    """Draw ``n_directions`` N(0, 1) vectors and normalise each; returns (n_directions, size) float32."""
    raw = rng.standard_normal((n_directions, layout.size), dtype=np.float32)
    return np.stack([normalize_direction(d, centre, layout, normalization, ignore, filters)
                     for d in raw])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors (0 when either is zero, NaN when either is not
    finite)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if not np.isfinite(denom):
        return float("nan")
    return float(a @ b / denom) if denom > 0 else 0.0


class TrajectoryPCA:
    """Principal components of a training path, taken relative to its last point.

    ``fit(path)`` takes ``path`` of shape (T+1, size), rows ``w_0 ... w_T``, forms ``w_i - w_T`` for
    i < T and fits scikit-learn's PCA. Rows that are not finite (a diverged run) are left out:
    ``w_T`` is then the last finite checkpoint; ``n_finite_`` counts the rows used. Learned: ``components_`` (n_components, size) float32 unit
    vectors, ``explained_variance_ratio_`` (n_components,).
    """

    def __init__(self, n_components: int = 2, mask: np.ndarray | None = None):
        self.n_components = n_components
        self.mask = mask

    def fit(self, path: np.ndarray, *more: np.ndarray) -> "TrajectoryPCA":
        """Fit on ``path`` (T+1, size); further paths in ``more`` (other runs) add their
        checkpoints' differences from the same end point, the last finite row of ``path``."""
        path = np.asarray(path, dtype=np.float64)
        if path.ndim != 2:
            raise ValueError(f"The trajectory must be a 2-D array (checkpoints, weights). "
                             f"Got shape {path.shape} instead.")
        needed = self.n_components + 1
        finite = np.isfinite(path).all(axis=1)
        self.n_finite_ = int(finite.sum())
        if self.n_finite_ < needed:
            got = (f"{path.shape[0]}" if self.n_finite_ == len(path) else
                   f"{self.n_finite_} finite {'one' if self.n_finite_ == 1 else 'ones'} (the other {len(path) - self.n_finite_} are NaN "
                   f"or infinite: the training diverged)")
            raise LandscapeError(f"The trajectory must hold at least {needed} checkpoints for PCA "
                                 f"with {self.n_components} components. Got {got} instead. Record "
                                 f"more often ({{record_every}}) or train longer.",
                                 record_every="a shorter recording interval")
        path = path[finite]  # a diverged run: the components of its finite part
        diffs = path[:-1] - path[-1]
        for other in more:
            other = np.asarray(other, dtype=np.float64)
            other = other[np.isfinite(other).all(axis=1)]
            diffs = np.concatenate([diffs, other - path[-1]])
            self.n_finite_ += len(other)
        if self.mask is not None:
            diffs[:, self.mask] = 0.0
        from sklearn.decomposition import PCA  # imported when used: it takes a second

        pca = PCA(n_components=self.n_components, svd_solver="full")
        pca.fit(diffs)
        self.components_ = pca.components_.astype(np.float32)
        self.explained_variance_ratio_ = pca.explained_variance_ratio_.astype(np.float64)
        return self
