"""Curves between two models (Garipov et al. 2018): a quadratic Bezier curve or a polychain with
one bend, as weights of the two ends and the bend, their place on the plane through the three,
and the barrier along a curve. Pure NumPy."""

from __future__ import annotations

import numpy as np

BENDS = ("bezier", "polychain")


def bend_coefficients(bend: str, t) -> np.ndarray:
    """The weights of A, the bend and B at each ``t`` (T,) in [0, 1]: the curve's point is
    ``c[:, 0] A + c[:, 1] theta + c[:, 2] B``; (T, 3) float64, each row summing to 1.

    ``bezier``: ``(1-t)^2, 2t(1-t), t^2``; ``polychain``: A to the bend for t <= 1/2, the bend to
    B after (``1-2t, 2t, 0`` then ``0, 2-2t, 2t-1``)."""
    t = np.asarray(t, np.float64).reshape(-1)
    if bend == "bezier":
        return np.stack([(1 - t) ** 2, 2 * t * (1 - t), t ** 2], axis=1)
    if bend == "polychain":
        first = t <= 0.5
        return np.stack([np.where(first, 1 - 2 * t, 0.0),
                         np.where(first, 2 * t, 2 - 2 * t),
                         np.where(first, 0.0, 2 * t - 1)], axis=1)
    raise ValueError(f"The 'bend' parameter must be one of {BENDS}. Got {bend!r} instead.")


def curve_coordinates(bend: str, t, bend_xy) -> np.ndarray:
    """The curve's points on the plane whose centre is A, with B at (1, 0) and the bend at
    ``bend_xy``: (T, 2). Both curves are combinations of A, the bend and B, so they lie in
    that plane exactly."""
    c = bend_coefficients(bend, t)
    return c[:, 1:2] * np.asarray(bend_xy, np.float64)[None] + c[:, 2:3] * np.array([[1.0, 0.0]])


def line_coordinates(t) -> np.ndarray:
    """The straight line A -> B on the same plane: (T, 2), ``(t, 0)``."""
    t = np.asarray(t, np.float64).reshape(-1)
    return np.stack([t, np.zeros_like(t)], axis=1)


def barrier(values) -> float:
    """The barrier along a curve whose values at t = 0 ... 1 are ``values`` (T,): the largest
    value minus the mean of the two ends' (Garipov et al.'s measure); NaN when a value is not
    finite."""
    values = np.asarray(values, np.float64)
    if values.size < 2 or not np.isfinite(values).all():
        return float("nan")
    return float(values.max() - 0.5 * (values[0] + values[-1]))
