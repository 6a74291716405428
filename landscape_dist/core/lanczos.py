"""Lanczos iterations for many symmetric operators at once, and what they yield: extreme
eigenvalues and eigenvectors, Hutchinson's trace estimate, and the spectral density by stochastic
Lanczos quadrature.

Pure NumPy. An operator is only ever applied through ``matvec(vectors, rows)``: the products of
the operators of problems ``rows`` (a 1-D index array) with one vector each, shape (len(rows), n).
All problems advance together, one ``matvec`` call per step for all of them, so a worker can
evaluate the products of a whole tile of grid points in one compiled call. Every Lanczos vector
is re-orthogonalised against all earlier ones (twice), which keeps the Ritz values free of the
spurious copies plain Lanczos produces in floating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Matvec = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LanczosResult:
    """The tridiagonal matrix of each problem (``alpha`` (B, m), ``beta`` (B, m - 1); problem b
    uses its first ``steps[b]`` entries), and the Lanczos basis ``basis`` (B, m, n) when kept."""

    alpha: np.ndarray
    beta: np.ndarray
    steps: np.ndarray
    basis: np.ndarray | None = None

    def ritz(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending, (s,)) and the eigenvectors of problem b's tridiagonal (s, s)."""
        s = int(self.steps[b])
        if s == 1:
            return self.alpha[b, :1].copy(), np.ones((1, 1))
        return _eigh_tridiagonal(self.alpha[b, :s], self.beta[b, :s - 1])


def _eigh_tridiagonal(diagonal, off_diagonal):
    """SciPy's symmetric tridiagonal eigensolver, imported when first used (importing
    ``scipy.linalg`` costs every command 0.2 s at start-up)."""
    from scipy.linalg import eigh_tridiagonal

    return eigh_tridiagonal(diagonal, off_diagonal)


def _residuals(alpha, beta_next, s):
    """Ritz values (ascending) and their residual norms |beta_s * last component|."""
    if s == 1:
        theta, vecs = alpha[:1].copy(), np.ones((1, 1))
    else:
        theta, vecs = _eigh_tridiagonal(alpha[:s], beta_next[:s - 1])
    return theta, np.abs(beta_next[s - 1] * vecs[-1]) if s <= len(beta_next) else np.zeros(s)


def _converged(theta: np.ndarray, residual: np.ndarray, tol: float, want: tuple[str, int]) -> bool:
    """Whether the wanted extreme Ritz values have residuals <= tol * spectral radius estimate.
    ``want``: ('both', k) the k largest and the smallest; ('top', k) the k largest."""
    side, k = want
    scale = max(float(np.max(np.abs(theta))), np.finfo(float).tiny)
    index = list(range(max(0, len(theta) - k), len(theta)))
    if side == "both":
        index.append(0)
    return bool(np.all(residual[index] <= tol * scale))


def _reorthogonalise(w: np.ndarray, basis: np.ndarray) -> None:
    """Remove from each row of ``w`` (b, n), in place, its components along that problem's
    orthonormal ``basis`` (b, k, n); a second pass where the first removed most of the vector
    ("twice is enough": Giraud et al. 2005). The passes read the whole basis, which is what a
    step costs beyond its product."""
    before = np.linalg.norm(w, axis=1)
    for rows in (slice(None), None):
        if rows is None:
            rows = np.flatnonzero(np.linalg.norm(w, axis=1) < 0.7 * before)
            if not len(rows):
                return
        part = w[rows].astype(basis.dtype)
        coef = np.matmul(basis[rows], part[:, :, None])  # (b, k, 1)
        w[rows] -= np.matmul(coef.transpose(0, 2, 1), basis[rows])[:, 0]


def lanczos(matvec: Matvec, start: np.ndarray, max_steps: int, *, tol: float | None = None,
            want: tuple[str, int] = ("both", 1), keep_basis: bool = False,
            check_every: int = 4, basis_dtype=np.float64) -> LanczosResult:
    """Run Lanczos on B problems from the start vectors ``start`` (B, n).

    Each problem stops at ``max_steps`` (at most n), when its Krylov space is exhausted (an
    invariant subspace: the Ritz values are then exact), or, with ``tol``, once its wanted
    extreme Ritz values (``want``, see :func:`_converged`) have converged. Problems that stopped
    are no longer passed to ``matvec``. ``basis_dtype``: the Lanczos vectors' storage; a step
    reads all of them, so float32 halves that cost where the products are float32 anyway.
    """
    start = np.atleast_2d(np.asarray(start, dtype=np.float64))
    n_problems, n = start.shape
    m = int(min(max_steps, n))
    alpha = np.zeros((n_problems, m))
    beta = np.zeros((n_problems, m))  # beta[b, j]: the norm after step j (the coupling to j + 1)
    steps = np.zeros(n_problems, dtype=int)
    norms = np.linalg.norm(start, axis=1)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ValueError("Every Lanczos start vector must be finite and non-zero.")
    kept = np.zeros((n_problems, m, n), dtype=basis_dtype) if keep_basis else None
    # the bases of the problems still running, contiguous (compacted when some stop)
    basis = np.zeros((n_problems, m, n), dtype=basis_dtype)
    basis[:, 0] = start / norms[:, None]
    active = np.arange(n_problems)
    for j in range(m):
        q = basis[:, j].astype(np.float64)
        w = np.asarray(matvec(q, active), dtype=np.float64).reshape(len(active), n)
        bad = ~np.all(np.isfinite(w), axis=1)
        w[bad] = 0.0  # a non-finite product ends that problem (its values become NaN below)
        alpha[active, j] = np.einsum("bn,bn->b", w, q)
        w -= alpha[active, j][:, None] * q  # the three-term recurrence ...
        if j:
            w -= beta[active, j - 1][:, None] * basis[:, j - 1].astype(np.float64)
        _reorthogonalise(w, basis[:, :j + 1])  # ... then against every earlier vector
        beta[active, j] = np.linalg.norm(w, axis=1)
        steps[active] = j + 1
        scale = np.maximum(np.abs(alpha[active, :j + 1]).max(axis=1), np.finfo(float).tiny)
        done = (beta[active, j] <= 1e-10 * scale) | bad  # exhausted Krylov space, or diverged
        if bad.any():
            alpha[active[bad], 0] = np.nan
        if tol is not None and ((j + 1) % check_every == 0):
            for i, b in enumerate(active):
                if not done[i]:
                    theta, res = _residuals(alpha[b], beta[b], j + 1)
                    done[i] = _converged(theta, res, tol, want)
        if j + 1 < m:
            basis[:, j + 1] = w / np.where(done, 1.0, beta[active, j])[:, None]
        if done.any() or j + 1 == m:
            if kept is not None:
                finished = done if j + 1 < m else np.ones_like(done)
                kept[active[finished]] = basis[finished]
            active, basis = active[~done], basis[~done]
        if not len(active):
            break
    return LanczosResult(alpha, beta[:, :m - 1] if m > 1 else beta[:, :0], steps, kept)


def extreme_eigenvalues(result: LanczosResult) -> tuple[np.ndarray, np.ndarray]:
    """The largest and the smallest Ritz value of every problem: two (B,) arrays (NaN where a
    product was not finite)."""
    top = np.empty(len(result.steps))
    bottom = np.empty(len(result.steps))
    for b in range(len(result.steps)):
        if not np.isfinite(result.alpha[b, 0]):
            top[b] = bottom[b] = np.nan
            continue
        theta, _ = result.ritz(b)
        top[b], bottom[b] = theta[-1], theta[0]
    return top, bottom


def ritz_pairs(result: LanczosResult, k: int, b: int = 0, largest: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """The k largest (or, ``largest=False``, smallest) Ritz values of problem b, largest (or
    smallest) first, (k,), and their Ritz vectors (k, n), each of unit norm with its
    largest-magnitude entry positive (a fixed sign)."""
    if result.basis is None:
        raise ValueError("Ritz vectors need the Lanczos basis: run lanczos(..., keep_basis=True).")
    theta, vecs = result.ritz(b)
    order = (np.argsort(theta)[::-1] if largest else np.argsort(theta))[:k]
    s = int(result.steps[b])
    vectors = vecs[:, order].T @ result.basis[b, :s]
    return theta[order], np.array([fixed_sign(v / np.linalg.norm(v)) for v in vectors])


def fixed_sign(vector: np.ndarray) -> np.ndarray:
    """``vector`` or its negative, whichever has its largest-magnitude entry positive."""
    return vector if vector[np.argmax(np.abs(vector))] >= 0 else -vector


def rademacher(rng: np.random.Generator, shape) -> np.ndarray:
    """Entries +1 or -1 with equal probability."""
    return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0


def hutchinson(quadratic_forms: np.ndarray) -> tuple[float, float]:
    """Hutchinson's trace estimate from v^T H v of Rademacher vectors v: (mean, standard error)."""
    q = np.asarray(quadratic_forms, dtype=np.float64)
    stderr = float(np.std(q, ddof=1) / np.sqrt(len(q))) if len(q) > 1 else float("nan")
    return float(np.mean(q)), stderr


def quadrature(result: LanczosResult) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic Lanczos quadrature nodes and weights of every problem: (B, m) arrays, the
    Ritz values and the squared first components of their vectors (weights sum to 1; unused
    entries have weight 0)."""
    n_problems, m = result.alpha.shape
    nodes, weights = np.zeros((n_problems, m)), np.zeros((n_problems, m))
    for b in range(n_problems):
        theta, vecs = result.ritz(b)
        nodes[b, :len(theta)], weights[b, :len(theta)] = theta, vecs[0] ** 2
    return nodes, weights


def spectral_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray,
                     sigma: float) -> np.ndarray:
    """The spectral density (per unit eigenvalue, integrating to 1) on ``grid`` from quadrature
    nodes and weights (B, m), each node widened to a Gaussian of width ``sigma``."""
    grid = np.asarray(grid, dtype=np.float64)
    diff = (grid[:, None, None] - nodes[None]) / sigma
    kernel = np.exp(-0.5 * diff ** 2) / (sigma * np.sqrt(2 * np.pi))
    return np.einsum("gbm,bm->g", kernel, weights) / nodes.shape[0]
