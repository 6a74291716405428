"""Direction vectors for a slice: seeded random with normalisation, or PCA of a trajectory."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from .layout import WeightLayout


def normalize_direction(direction: np.ndarray, centre: np.ndarray, layout: WeightLayout,
                        normalization: str = "filter", ignore: str = "biasbn") -> np.ndarray:
    """Rescale ``direction`` piece by piece to the norm of the matching piece of ``centre``.

    ``filter``: each slice along the last axis of a tensor with >= 2 dims (a Dense/Conv output unit);
    ``layer``: each tensor; ``model``: the whole vector; ``none``: unchanged. Tensors with <= 1 dim
    get ``layer`` treatment, or zeros when ``ignore == 'biasbn'``. Returns a new (size,) float32 array.
    """
    out = np.array(direction, dtype=np.float64)
    centre = np.asarray(centre, dtype=np.float64)
    if normalization == "model":
        out *= _ratio(np.linalg.norm(centre), np.linalg.norm(out))
    elif normalization in ("filter", "layer"):
        for d, w in zip(layout.unflatten(out), layout.unflatten(centre)):
            if normalization == "filter" and d.ndim >= 2:
                d_norm = np.linalg.norm(d.reshape(-1, d.shape[-1]), axis=0)
                w_norm = np.linalg.norm(w.reshape(-1, w.shape[-1]), axis=0)
                d *= _ratio(w_norm, d_norm)
            else:
                d *= _ratio(np.linalg.norm(w), np.linalg.norm(d))
    elif normalization != "none":
        raise ValueError(f"The 'normalization' parameter must be one of filter, layer, model, none. "
                         f"Got {normalization!r} instead.")
    if ignore == "biasbn":
        out[layout.low_rank_mask()] = 0.0
    return out.astype(np.float32)


def _ratio(target, current):
    current = np.asarray(current, dtype=np.float64)
    return np.divide(target, current, out=np.zeros_like(current), where=current > 0)


def random_directions(centre: np.ndarray, layout: WeightLayout, n_directions: int,
                      rng: np.random.Generator, normalization: str = "filter",
                      ignore: str = "biasbn") -> np.ndarray:
    """Draw ``n_directions`` N(0, 1) vectors and normalise each; returns (n_directions, size) float32."""
    raw = rng.standard_normal((n_directions, layout.size), dtype=np.float32)
    return np.stack([normalize_direction(d, centre, layout, normalization, ignore) for d in raw])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors (0 when either is zero)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else 0.0


class TrajectoryPCA:
    """Principal components of a training path, taken relative to its last point.

    ``fit(path)`` takes ``path`` of shape (T+1, size), rows ``w_0 ... w_T``, forms ``w_i - w_T`` for
    i < T and fits scikit-learn's PCA. Learned: ``components_`` (n_components, size) float32 unit
    vectors, ``explained_variance_ratio_`` (n_components,).
    """

    def __init__(self, n_components: int = 2, mask: np.ndarray | None = None):
        self.n_components = n_components
        self.mask = mask

    def fit(self, path: np.ndarray) -> "TrajectoryPCA":
        path = np.asarray(path, dtype=np.float64)
        if path.ndim != 2:
            raise ValueError(f"The trajectory must be a 2-D array (checkpoints, weights). "
                             f"Got shape {path.shape} instead.")
        needed = self.n_components + 1
        if path.shape[0] < needed:
            raise ValueError(f"The trajectory must hold at least {needed} checkpoints for PCA with "
                             f"{self.n_components} components. Got {path.shape[0]} instead. "
                             f"Record more often (train.record_every) or train longer.")
        diffs = path[:-1] - path[-1]
        if self.mask is not None:
            diffs[:, self.mask] = 0.0
        pca = PCA(n_components=self.n_components, svd_solver="full")
        pca.fit(diffs)
        self.components_ = pca.components_.astype(np.float32)
        self.explained_variance_ratio_ = pca.explained_variance_ratio_.astype(np.float64)
        return self
