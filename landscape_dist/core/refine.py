"""Adaptive refinement of a 2-D grid: which points to evaluate next, and the interpolated picture.

The grid is visited by strides ``S, S/2, ..., 1`` (``S`` from :func:`coarsest_stride`). The
lattice of stride ``s`` along an axis of ``n`` points is the multiples of ``s`` and the last index;
a *cell* of stride ``s`` lies between consecutive lattice indices along both axes. The lattices of
strides ``S`` and ``S/2`` are evaluated whole; from then on a cell of stride ``s`` whose four
corners were evaluated is split (the stride-``s/2`` points in it are evaluated) when

- a corner is not finite (NaN or infinite loss), or
- a corner's *surplus* — how far its evaluated value lies from the value interpolated from the
  coarser stride ``2s`` — exceeds ``tol`` times the span of the values evaluated so far, or
- a contour level of the figure crosses the cell and the interpolation inside it would misplace
  the line by more than ``shift`` grid cells: about a quarter of the corners' surplus (the next
  stride's interpolation error) over the rise of the values per grid cell.

The tests work on log values when the contour levels are log-spaced (every value > 0), so that
the basin floor is resolved as finely as the walls. The picture between evaluated points is the
hierarchical bilinear interpolation (:func:`fill`): in a cell that was not split it is the bilinear
interpolation of the corners, and it passes through every evaluated point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import coarsest_stride


def lattice(n: int, stride: int) -> np.ndarray:
    """Indices of the stride-``stride`` lattice along an axis of ``n`` points: the multiples of
    the stride and the last index."""
    idx = np.arange(0, n, stride)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def strides(shape: tuple[int, int]) -> list[int]:
    """The strides visited, coarsest first: ``S, S/2, ..., 1``."""
    s, out = coarsest_stride(shape), []
    while s >= 1:
        out.append(s)
        s //= 2
    return out


def _weights(targets: np.ndarray, knots: np.ndarray):
    """For linear interpolation from ``knots`` (increasing indices) to ``targets``: the left
    knot's position and the right knot's weight."""
    k = np.clip(np.searchsorted(knots, targets, side="right") - 1, 0, max(len(knots) - 2, 0))
    if len(knots) == 1:
        return k, np.zeros(len(targets))
    return k, (targets - knots[k]) / (knots[k + 1] - knots[k])


def _bilinear(known: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape) -> np.ndarray:
    """The whole grid interpolated bilinearly from values ``known`` (len(rows), len(cols)) at
    the lattice ``rows x cols``. A lattice point keeps its own value exactly (a non-finite
    neighbour does not leak into it through a zero weight)."""

    def between(left, right, w):
        with np.errstate(invalid="ignore"):
            return np.where(w == 0, left, left * (1.0 - w) + right * w)

    kc, wc = _weights(np.arange(shape[1]), cols)
    across = between(known[:, kc], known[:, np.minimum(kc + 1, len(cols) - 1)], wc)
    kr, wr = _weights(np.arange(shape[0]), rows)
    return between(across[kr], across[np.minimum(kr + 1, len(rows) - 1)], wr[:, None])


def fill(values: np.ndarray, done: np.ndarray, down_to: int = 1) -> np.ndarray:
    """The hierarchical interpolation of ``values`` (rows, columns) known where ``done``: from the
    coarsest lattice down to the stride ``down_to``, each lattice taking the evaluated values
    where there are some and the coarser interpolation elsewhere. With ``down_to=1`` it equals
    ``values`` wherever ``done``. NaN where an interpolating corner is not finite."""
    values = np.asarray(values, np.float64)
    shape = values.shape
    picture = None
    for s in strides(shape):
        if s < down_to:
            break
        rows, cols = lattice(shape[0], s), lattice(shape[1], s)
        grid = values[np.ix_(rows, cols)]
        if picture is not None:
            grid = np.where(done[np.ix_(rows, cols)], grid, picture[np.ix_(rows, cols)])
        picture = _bilinear(grid, rows, cols, shape)
    return picture


def _corners(a: np.ndarray) -> np.ndarray:
    """The four corners of every cell of a lattice array, stacked: (4, rows - 1, columns - 1)."""
    return np.stack([a[:-1, :-1], a[1:, :-1], a[:-1, 1:], a[1:, 1:]])


@dataclass(frozen=True)
class Refiner:
    """Chooses the points of each stride (see the module's description). ``tol``: the surplus
    tolerance as a fraction of the values' span (None: no surplus test); ``levels``: the contour
    levels to resolve (None: no contour test); ``log``: the tests on log values (used only when
    every value is > 0); ``shift``: the estimated misplacement of a contour line, in grid cells,
    above which a cell it crosses is split."""

    shape: tuple[int, int]
    tol: float | None = 0.01
    levels: int | None = 25
    log: bool = True
    shift: float = 0.25

    @property
    def strides(self) -> list[int]:
        return strides(self.shape)

    def steps(self) -> list[tuple[str, int]]:
        """The refinement's steps in order: ('full', S), ('full', S/2), then ('split', s) for
        s = S/2 ... 2 (the cells of stride s split into stride s/2)."""
        st = self.strides
        return [("full", s) for s in st[:2]] + [("split", s) for s in st[1:-1]]

    def points(self, step: tuple[str, int], values: np.ndarray, done: np.ndarray):
        """The (rows, cols) index arrays, row-major, that ``step`` evaluates."""
        kind, stride = step
        return self.full(stride, done) if kind == "full" else self.split(stride, values, done)

    def full(self, stride: int, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The points of the whole stride-``stride`` lattice not yet ``done``, row-major."""
        rows, cols = lattice(self.shape[0], stride), lattice(self.shape[1], stride)
        want = np.zeros(self.shape, bool)
        want[np.ix_(rows, cols)] = True
        return np.nonzero(want & ~done)

    def split(self, stride: int, values: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stride-``stride // 2`` points (row-major (rows, cols) index arrays) of the
        stride-``stride`` cells to split, given the ``values`` evaluated so far (NaN where not
        ``done``)."""
        i, j = np.nonzero(self.cells_to_split(stride, values, done))
        rows, cols = lattice(self.shape[0], stride), lattice(self.shape[1], stride)
        half = stride // 2
        r0, r1, c0, c1 = rows[i], rows[i + 1], cols[j], cols[j + 1]
        rm = np.where(r0 + half < r1, r0 + half, r0)  # a short last cell may have no middle
        cm = np.where(c0 + half < c1, c0 + half, c0)
        want = np.zeros(self.shape, bool)
        for r, c in ((rm, c0), (rm, c1), (r0, cm), (r1, cm), (rm, cm)):
            want[r, c] = True
        return np.nonzero(want & ~done)

    def cells_to_split(self, stride: int, values: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Boolean (cell rows, cell columns): the stride-``stride`` cells to split."""
        values = np.asarray(values, np.float64)
        rows, cols = lattice(self.shape[0], stride), lattice(self.shape[1], stride)
        v, d = values[np.ix_(rows, cols)], done[np.ix_(rows, cols)]
        active = _corners(d).all(axis=0)
        split = ~_corners(np.isfinite(v)).all(axis=0)
        finite = values[done & np.isfinite(values)]
        if finite.size == 0:
            return active & split
        t = np.log if self.log and finite.min() > 0 else (lambda a: a)
        with np.errstate(invalid="ignore", divide="ignore"):
            tv = t(v)
            lo, hi = float(t(finite.min())), float(t(finite.max()))
            if stride < self.strides[0]:  # the corners' surplus over the coarser interpolation
                coarse = fill(values, done, down_to=2 * stride)[np.ix_(rows, cols)]
                surplus = np.where(d, np.abs(tv - t(coarse)), 0.0)
                error = np.nan_to_num(_corners(surplus), nan=np.inf).max(axis=0)
            else:  # the coarsest cells: nothing coarser to compare with
                error = np.full(active.shape, np.inf)
            if self.tol is not None:
                split |= error > self.tol * ((hi - lo) or 1.0)
            if self.levels:
                tc = _corners(np.where(np.isfinite(tv), tv, lo))
                bands = np.searchsorted(np.linspace(lo, hi, self.levels), tc, side="right")
                crossed = bands.min(axis=0) != bands.max(axis=0)
                rise = tc.max(axis=0) - tc.min(axis=0)  # across the cell: ~ stride grid cells
                misplaced = error / 4.0 * stride / np.maximum(rise, 1e-300)
                split |= crossed & (misplaced > self.shift)
        return active & split


def contour_shift(picture: np.ndarray, reference: np.ndarray, levels: int = 25,
                  log: bool = True) -> float:
    """How far (in grid cells) the contour lines of ``picture`` lie from those of
    ``reference``, both banded by the reference's contour levels: the largest distance from a
    point whose band differs to the nearest reference point in the picture's band there (0 when
    every point is in its reference band). Non-finite points are left out."""
    from scipy import ndimage

    finite = np.isfinite(reference) & np.isfinite(picture)
    ref = reference[finite]
    t = np.log if log and ref.min() > 0 and picture[finite].min() > 0 else (lambda a: a)
    edges = np.linspace(t(ref.min()), t(ref.max()), levels)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.searchsorted(edges, np.where(finite, t(picture), np.inf), side="right")
        b = np.searchsorted(edges, np.where(finite, t(reference), np.inf), side="right")
    differ = (a != b) & finite
    worst = 0.0
    for band in np.unique(a[differ]):
        distance = ndimage.distance_transform_edt(b != band)
        worst = max(worst, float(distance[differ & (a == band)].max()))
    return worst
