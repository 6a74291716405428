"""What every plane must be before a sweep evaluates it, whatever kind built it: ``k`` finite,
non-zero directions, one entry per weight of the model, spanning ``k`` dimensions.

Pure NumPy. :func:`check_directions` takes the words that say where the directions came from
(``"The 'file' parameter names 'd.npz', whose directions"``), so that a kind reading them from a
file names the file, and :func:`check_plane` checks any kind's plane in the sweep's one place.
"""

from __future__ import annotations

import numpy as np

from ..core.plane import Plane
from ..errors import LandscapeError

# the part of direction 1 orthogonal to direction 0, relative to its norm, below which the two
# directions count as parallel: the plane they span is then rounding noise in one of them
PARALLEL = 1e-5


def check_directions(directions: np.ndarray, size: int, k: int, source: str,
                     fix: str = "", words: dict | None = None) -> None:
    """Refuse ``directions`` (rows, size') unless its first ``k`` rows are finite, non-zero,
    ``size`` wide and (k = 2) not parallel. ``source`` begins each message (a template, its slots
    filled from ``words``; a higher layer may reword them); ``fix`` ends it."""
    words = words or {}
    array = np.asarray(directions)
    shape = " x ".join(str(n) for n in array.shape) or "a scalar"
    if array.ndim != 2 or array.shape[1] != size or array.shape[0] < k:
        raise LandscapeError(f"{source} are an array of shape {shape}; a {k}-D slice of this model "
                             f"needs {k} x {size} ({k} direction(s), one entry per weight). {fix}"
                             .strip(), words)
    used = np.asarray(array[:k], np.float64)
    for i, row in enumerate(used):
        bad = int(np.sum(~np.isfinite(row)))
        if bad:
            raise LandscapeError(f"{source} hold NaN or infinite values (direction {i}: {bad} of "
                                 f"{size} entries); every entry must be finite. {fix}".strip(),
                                 words)
        if not np.any(row.astype(np.float32)):  # the plane keeps float32: zero there is zero
            raise LandscapeError(f"{source} hold a direction of zeros (direction {i}); every "
                                 f"direction must be non-zero. {fix}".strip(), words)
    if k == 2:
        off = _off_line(used[0], used[1])
        if off <= PARALLEL:
            raise LandscapeError(f"{source} are parallel (the part of direction 1 orthogonal to "
                                 f"direction 0 is {off:.3g} of its norm, at most {PARALLEL:g}); "
                                 f"two directions must span a plane. {fix}".strip(), words)


def check_plane(plane: Plane, size: int, k: int) -> None:
    """Refuse a plane whose directions do not fit a sweep of a model of ``size`` weights on a
    ``k``-D grid (see :func:`check_directions`); the plane's centre must be ``size`` wide too.
    Messages speak of the ``{directions}`` (reworded by the layer that knows the setting)."""
    words = {"directions": "'directions' parameter"}
    if np.asarray(plane.centre).shape != (size,):
        raise LandscapeError(f"The plane built from the {{directions}} has a centre of shape "
                             f"{np.asarray(plane.centre).shape}; the model has {size} weights.",
                             words)
    directions = np.asarray(plane.directions)
    if not np.all(np.isfinite(plane.centre)) and directions.shape[1:] == (size,):
        # a diverged training run's centre: its directions are not finite either, and the sweep
        # still gives a complete, honest surface (every point non-finite, counted and masked)
        return
    check_directions(plane.directions, size, k, "The directions built from the {directions}",
                     words=words)


def _off_line(d0: np.ndarray, d1: np.ndarray) -> float:
    """|part of d1 orthogonal to d0| / |d1| (0 when parallel, 1 when orthogonal)."""
    along = d1 @ d0 / (d0 @ d0)
    return float(np.linalg.norm(d1 - along * d0) / np.linalg.norm(d1))
