"""Coordinates of recorded weights in a slice's plane (least squares) and their distance from it."""

from __future__ import annotations

import numpy as np


def project_path(path: np.ndarray, centre: np.ndarray, directions: np.ndarray):
    """Least-squares plane coordinates of every row of ``path``.

    path: (T, size); centre: (size,); directions: (k, size). Solves ``D^T c ~= w_i - centre`` with
    the Moore-Penrose pseudo-inverse. Returns ``(coords (T, k), residual (T,), relative (T,))``:
    residual is ``||w_i - centre - D^T c||``, relative divides it by ``||w_i - centre||`` (0 where
    that is 0), i.e. the fraction of the step from the centre that lies outside the plane. Rows
    that are not finite (a diverged run), or a plane that is not, give NaN.
    """
    diffs = np.asarray(path, dtype=np.float64) - np.asarray(centre, dtype=np.float64)
    basis = np.asarray(directions, dtype=np.float64).T  # (size, k)
    coords = np.full((len(diffs), basis.shape[1]), np.nan)
    residual = np.full(len(diffs), np.nan)
    finite = np.isfinite(diffs).all(axis=1)
    if np.isfinite(basis).all() and finite.any():  # a diverged run: its non-finite rows stay NaN
        d = diffs[finite]
        coords[finite] = d @ np.linalg.pinv(basis).T
        residual[finite] = np.linalg.norm(d - coords[finite] @ basis.T, axis=1)
    dist = np.linalg.norm(diffs, axis=1)
    relative = np.divide(residual, dist, out=np.zeros_like(residual), where=dist > 0)
    relative[~np.isfinite(residual)] = np.nan
    return coords, residual, relative


def off_plane_fraction(residual: np.ndarray, distance: np.ndarray) -> float:
    """sqrt(sum residual^2 / sum distance^2) over a path, where distance is each point's distance
    from the centre: the share of the path that the plane does not capture (0: in the plane)."""
    residual = np.asarray(residual, dtype=np.float64)
    distance = np.asarray(distance, dtype=np.float64)
    keep = np.isfinite(residual) & np.isfinite(distance)  # the finite part of a diverged path
    if not keep.any():
        return float("nan")
    total = float(np.sum(distance[keep] ** 2))
    return float(np.sqrt(np.sum(residual[keep] ** 2) / total)) if total > 0 else 0.0
