"""Two fidelities of one surface: the full data's values from a few points and a cheap surface's
(a subset of the examples) from many, combined (Kennedy and O'Hagan, Biometrika 2000).

The expensive output is modelled as a scaled cheap output plus a smooth discrepancy field::

    t(full(x)) = rho * t(cheap(x)) + m + delta(x),     delta ~ GP(0, s2 * k(x, x'))

(``t``: log where every value is > 0 and the figure's contour levels are log-spaced, else the
identity). ``rho`` and ``m`` are estimated by generalised least squares and the kernel's length
scale and nugget by restricted maximum likelihood over a fixed grid of candidates (deterministic:
no optimiser, no random restarts); :class:`Discrepancy` then predicts the full data's value
wherever the cheap surface is known, with its standard deviation (universal kriging). Points are
given in grid-index units scaled to [0, 1] along each axis, so that a length scale reads as a
fraction of the plane. Pure NumPy.
"""

from __future__ import annotations

import numpy as np

from .refine import lattice, strides

CHEAP = "cheap"  # the subset's dataset beside the full data: its quantities are 'cheap/<name>'

# candidate length scales (fractions of the plane's side) and nuggets (fractions of the field's
# variance: 0 would interpolate float32 rounding exactly, and is ill-conditioned)
LENGTH_SCALES = tuple(np.geomspace(0.04, 4.0, 21))
NUGGETS = (1e-8, 1e-5, 1e-3)
_CHUNK = 16384  # prediction rows at a time: (rows, design points) float64 kernels stay small


def _one_thread():
    """BLAS on one thread: these matrices are small, and a threaded BLAS on a machine whose
    cores are busy (the workers') spent 40x longer in them in our measurements."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def describe(meta: dict) -> str:
    """What a two-fidelity slice's metadata says, in the words of captions and summaries."""
    return (f"two fidelities: {meta['full_points']:,} full-data points, {meta['cheap_points']:,} "
            f"subset points of {meta['examples']:,} examples, the rest estimated")


def coarse_stride(shape: tuple[int, int], points: int) -> int:
    """The coarsest refinement stride (see :func:`~.refine.strides`) whose lattice has at least
    ``points`` points along each axis of a (rows, columns) grid (1 when none does)."""
    for s in strides(shape):
        if min(len(lattice(shape[0], s)), len(lattice(shape[1], s))) >= points:
            return s
    return 1


def lattice_mask(shape: tuple[int, int], stride: int) -> np.ndarray:
    """Boolean (rows, columns): the points of the stride-``stride`` lattice."""
    mask = np.zeros(shape, bool)
    mask[np.ix_(lattice(shape[0], stride), lattice(shape[1], stride))] = True
    return mask


def unit_coords(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(P, 2) positions of grid indices ``rows``, ``cols`` scaled to [0, 1] along each axis."""
    scale = np.maximum(np.array(shape, np.float64) - 1.0, 1.0)
    return np.stack([np.asarray(rows, np.float64), np.asarray(cols, np.float64)], axis=1) / scale


def matern52(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    """The Matern-5/2 correlation (len(a), len(b)) between points ``a`` (P, 2) and ``b`` (Q, 2):
    twice differentiable fields, without the squared exponential's ill-conditioning."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    d = np.sqrt(np.maximum(squared, 0.0)) * (np.sqrt(5.0) / length)
    return (1.0 + d + d * d / 3.0) * np.exp(-d)


class Discrepancy:
    """The discrepancy model: constructor stores settings, :meth:`fit` learns ``rho_``, ``mean_``,
    ``length_``, ``nugget_``, ``variance_`` (of the field, in transformed units) and returns self.

    ``log``: model log values (used only when every value given to :meth:`fit` is > 0).
    """

    def __init__(self, log: bool = True, length_scales=LENGTH_SCALES, nuggets=NUGGETS):
        self.log = log
        self.length_scales = tuple(length_scales)
        self.nuggets = tuple(nuggets)

    def _t(self, v):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(v) if self.log_ else np.asarray(v, np.float64)

    def fit(self, coords: np.ndarray, full: np.ndarray, cheap: np.ndarray) -> "Discrepancy":
        """Fit to the full data's values ``full`` (n,) and the cheap ones ``cheap`` (n,) at
        ``coords`` (n, 2); points where either is not finite are left out. Raises ValueError
        with fewer than 4 usable points."""
        full, cheap = np.asarray(full, np.float64), np.asarray(cheap, np.float64)
        keep = np.isfinite(full) & np.isfinite(cheap)
        if keep.sum() < 4:
            raise ValueError(f"A discrepancy needs at least 4 points where both fidelities are "
                             f"finite. Got {int(keep.sum())}.")
        self.log_ = bool(self.log and full[keep].min() > 0 and cheap[keep].min() > 0)
        x, y, c = np.asarray(coords, np.float64)[keep], self._t(full[keep]), self._t(cheap[keep])
        F = np.stack([c, np.ones_like(c)], axis=1)
        if np.ptp(c) == 0:  # a constant cheap surface tells nothing of the scale
            F = F[:, 1:]
        with _one_thread():
            best = self._search(x, F, y)
        if best is None:
            raise ValueError("The discrepancy's correlation matrix is singular for every length "
                             "scale tried (repeated points?).")
        self.length_, self.nugget_, fitted = best
        with _one_thread():  # for the deviations: products instead of a solve per point
            fitted["Linv"] = _solve_lower(fitted["L"], np.eye(len(x)))
        beta = fitted["beta"]
        self.rho_, self.mean_ = (float(beta[0]), float(beta[1])) if F.shape[1] == 2 else (0.0, float(beta[0]))
        self.variance_ = float(fitted["s2"])
        self._x, self._F, self._fit = x, F, fitted
        return self

    def _search(self, x, F, y):
        """(length scale, nugget, fitted) of the candidates' largest restricted likelihood."""
        best = None
        for length in self.length_scales:
            R = matern52(x, x, length)
            for nugget in self.nuggets:
                fitted = _gls(R + nugget * np.eye(len(x)), F, y)
                if fitted is not None and (best is None or fitted["reml"] > best[2]["reml"]):
                    best = (length, nugget, fitted)
        return best

    def _regressors(self, cheap: np.ndarray) -> np.ndarray:
        t = self._t(cheap)
        return np.stack([t, np.ones_like(t)], axis=1)[:, -self._F.shape[1]:]

    def predict(self, coords: np.ndarray, cheap: np.ndarray, return_std: bool = False):
        """The full data's value predicted at ``coords`` (P, 2) from the cheap values ``cheap``
        (P,) there: (P,), and with ``return_std`` its standard deviation (P,) in value units
        (for log values: the value times the log's standard deviation). NaN where ``cheap`` is
        not finite (or, on log values, not > 0)."""
        coords, cheap = np.asarray(coords, np.float64), np.asarray(cheap, np.float64)
        mean, std = np.empty(len(coords)), np.empty(len(coords))
        with _one_thread():
            for lo in range(0, len(coords), _CHUNK):
                part = slice(lo, lo + _CHUNK)
                mean[part], std[part] = self._latent(coords[part], cheap[part], return_std)
        with np.errstate(over="ignore", invalid="ignore"):
            value = np.exp(mean) if self.log_ else mean
        if not return_std:
            return value
        return value, (value * std if self.log_ else std)

    def _latent(self, coords, cheap, with_std: bool):
        """The transformed prediction and its standard deviation (0 unless ``with_std``)."""
        fit = self._fit
        k = matern52(coords, self._x, self.length_)  # (P, n)
        f = self._regressors(cheap)
        mean = f @ fit["beta"] + k @ fit["alpha"]
        if not with_std:
            return mean, 0.0
        v = k @ fit["Linv"].T  # (L^-1 k)^T: (P, n), one product instead of P solves
        u = f - (v @ fit["Linv"]) @ self._F  # (f - F^T K^-1 k)^T: (P, p)
        w = _solve_lower(fit["G"], u.T)
        var = 1.0 - (v * v).sum(1) + (w * w).sum(0)
        return mean, np.sqrt(np.maximum(var, 0.0) * self.variance_)


def _solve_lower(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.linalg import solve_triangular

    return solve_triangular(L, b, lower=True, check_finite=False)


def _solve_upper(U: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.linalg import solve_triangular

    return solve_triangular(U, b, lower=False, check_finite=False)


def _gls(K: np.ndarray, F: np.ndarray, y: np.ndarray) -> dict | None:
    """Generalised least squares of ``y`` (n,) on regressors ``F`` (n, p) with correlation
    ``K`` (n, n): coefficients, the residual's weights ``alpha = K^-1 (y - F beta)``, the
    profiled variance and the restricted log-likelihood; None where ``K`` is not positive
    definite."""
    n, p = F.shape
    try:
        L = np.linalg.cholesky(K)
    except np.linalg.LinAlgError:
        return None
    Fw, yw = _solve_lower(L, F), _solve_lower(L, y)
    try:
        G = np.linalg.cholesky(Fw.T @ Fw)  # F^T K^-1 F
    except np.linalg.LinAlgError:
        return None
    beta = np.linalg.solve(Fw.T @ Fw, Fw.T @ yw)
    r = yw - Fw @ beta
    s2 = max(float(r @ r) / max(n - p, 1), 1e-300)
    reml = -0.5 * ((n - p) * np.log(s2) + 2 * np.log(np.diag(L)).sum() + 2 * np.log(np.diag(G)).sum())
    alpha = _solve_upper(L.T, r)
    return {"L": L, "G": G, "beta": beta, "alpha": alpha, "s2": s2, "reml": float(reml)}


def most_uncertain(model: Discrepancy, candidates: np.ndarray, slope: np.ndarray,
                   count: int) -> np.ndarray:
    """Indices into ``candidates`` (P, 2) of ``count`` points at which full-data values would
    settle the discrepancy most where it matters to the contour lines: greedily, the point whose
    predicted misplacement (standard deviation over ``slope``, the surface's rise per grid cell
    there, (P,)) is largest, each pick then counted as known (a Gaussian process's variance does
    not depend on the values, so the picks follow from the positions alone)."""
    x, nugget, length = model._x, model.nugget_, model.length_
    with _one_thread():
        return _greedy(x, nugget, length, candidates, slope, count)


def _greedy(x, nugget, length, candidates, slope, count) -> np.ndarray:
    chosen: list[int] = []
    slope = np.maximum(np.asarray(slope, np.float64), 1e-12)
    for _ in range(min(count, len(candidates))):
        design = np.concatenate([x, candidates[chosen]]) if chosen else x
        L = np.linalg.cholesky(matern52(design, design, length) + nugget * np.eye(len(design)))
        v = _solve_lower(L, matern52(candidates, design, length).T)
        var = np.maximum(1.0 - (v * v).sum(0), 0.0)
        score = np.sqrt(var) / slope
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    return np.array(chosen, int)
