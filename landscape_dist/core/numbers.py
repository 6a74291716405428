"""Numbers from a surface, so that two models can be compared by number, not only by eye.

Derived from the evaluated grid (nothing is evaluated here): the loss at the centre, the curvature
of a quadratic fitted to the points near the centre, and the width of the basin along each axis at
loss thresholds relative to the centre's loss, found by linear interpolation between grid points.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = (1.1, 2.0)


def _centre_value(xs, ys, values) -> tuple[float | None, bool]:
    """The value at (0, 0) when it is a grid point (exact), else None."""
    ix = np.flatnonzero(np.isclose(xs, 0.0, atol=1e-12))
    if ys is None:
        return (float(values[ix[0]]), True) if ix.size else (None, False)
    iy = np.flatnonzero(np.isclose(ys, 0.0, atol=1e-12))
    if ix.size and iy.size:
        return float(values[iy[0], ix[0]]), True
    return None, False


def quadratic_fit(points: np.ndarray, values: np.ndarray) -> dict:
    """Least-squares ``z = c + g.p + p^T H p / 2`` over points (n, k) with k = 1 or 2.

    Returns ``value`` (c), ``gradient`` (k,), ``hessian`` (k, k) and the fit's RMS residual.
    """
    points = np.asarray(points, np.float64)
    k = points.shape[1]
    columns = [np.ones(len(points))] + [points[:, i] for i in range(k)]
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    columns += [points[:, i] * points[:, j] * (0.5 if i == j else 1.0) for i, j in pairs]
    design = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    hessian = np.zeros((k, k))
    for (i, j), c in zip(pairs, coef[1 + k:]):
        hessian[i, j] = hessian[j, i] = c
    residual = float(np.sqrt(np.mean((design @ coef - values) ** 2)))
    return {"value": float(coef[0]), "gradient": coef[1:1 + k].tolist(), "hessian": hessian.tolist(),
            "rms_residual": residual}


def _crossing(coords: np.ndarray, line: np.ndarray, level: float, side: int) -> float | None:
    """Where ``line`` (values along ``coords``) first rises above ``level`` going from 0 towards
    ``side`` (+1 or -1), by linear interpolation; None if it stays below within the grid."""
    order = np.argsort(coords)
    coords, line = coords[order], line[order]
    start = int(np.argmin(np.abs(coords)))
    steps = range(start, len(coords) - 1) if side > 0 else range(start, 0, -1)
    for i in steps:
        j = i + side
        a, b = line[i], line[j]
        if not (np.isfinite(a) and np.isfinite(b)):
            return coords[j] if not np.isfinite(b) else None  # a diverged point bounds the basin
        if b > level >= a:
            return float(coords[i] + (level - a) / (b - a) * (coords[j] - coords[i]))
    return None


def surface_numbers(xs: np.ndarray, ys: np.ndarray | None, values: np.ndarray,
                    radius: float | None = None, thresholds=THRESHOLDS) -> dict:
    """Loss at the centre, local quadratic curvature and basin widths of one slice.

    xs (nx,), ys (ny,) or None, values (ny, nx) or (nx,). ``radius``: the points within it from
    the centre enter the quadratic fit (default: a quarter of the smaller half-range, widened to
    the 9 (2-D) or 5 (1-D) nearest points if fewer). Widths are ``None`` where the loss stays under
    the threshold up to the grid's edge (the basin is wider than the grid).
    """
    xs = np.asarray(xs, np.float64)
    values = np.asarray(values, np.float64)
    centre, exact = _centre_value(xs, ys, values)
    if ys is None:
        points, flat = xs[:, None], values.ravel()
        half = np.abs(xs).max()
    else:
        ys = np.asarray(ys, np.float64)
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        points, flat = np.stack([xx.ravel(), yy.ravel()], axis=1), values.ravel()
        half = min(np.abs(xs).max(), np.abs(ys).max())
    finite = np.isfinite(flat)
    out = {"loss_at_centre": centre, "centre_on_grid": exact, "thresholds": list(thresholds)}
    need = 5 if ys is None else 9
    if finite.sum() < need:
        out["quadratic"] = None
        return out
    distance = np.linalg.norm(points, axis=1)
    radius = float(radius if radius is not None else 0.25 * half)
    near = finite & (distance <= radius)
    if near.sum() < need:
        near = np.zeros_like(finite)
        near[np.flatnonzero(finite)[np.argsort(distance[finite])[:need]]] = True
        radius = float(distance[near].max())
    fit = quadratic_fit(points[near], flat[near])
    fit.update(radius=radius, points=int(near.sum()),
               eigenvalues=np.linalg.eigvalsh(np.array(fit["hessian"])).tolist())
    out["quadratic"] = fit
    reference = centre if centre is not None else fit["value"]
    widths = {}
    axes = [("x", xs, values if ys is None else None)]
    if ys is not None:
        from scipy.interpolate import RegularGridInterpolator

        grid = RegularGridInterpolator((ys, xs), values, bounds_error=False)
        axes = [("x", xs, grid(np.stack([np.zeros_like(xs), xs], axis=1))),
                ("y", ys, grid(np.stack([ys, np.zeros_like(ys)], axis=1)))]
    for name, coords, line in axes:
        for t in thresholds:
            level = t * reference
            lo, hi = _crossing(coords, line, level, -1), _crossing(coords, line, level, +1)
            widths[f"{name}@{t:g}"] = None if lo is None or hi is None else float(hi - lo)
    out["basin_width"] = widths
    return out
