"""Sharpness along training, pure NumPy: the top Hessian eigenvalues and Hutchinson's trace of
many checkpoints at once from any product operator, the optimiser's stability threshold, and
Adam's preconditioner.

Cohen et al. (ICLR 2021) track the largest Hessian eigenvalue through training: under gradient
descent with step size eta it rises until it hovers at 2/eta. For an adaptive optimiser the
*preconditioned* sharpness plays that role (Cohen et al. 2022): for Adam, lambda_1(P^-1 H) with
the optimiser's own diagonal preconditioner P, against (2 + 2 beta_1) / ((1 - beta_1) eta).
P^-1 H is similar to the symmetric P^-1/2 H P^-1/2, whose eigenvalues Lanczos finds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lanczos import hutchinson, lanczos, rademacher

HESSIAN, PRECONDITIONED = "hessian", "preconditioned_hessian"
ADAM_LIKE = ("adam", "adamw")  # Keras class names, lower-cased, whose update Adam's P describes


@dataclass(frozen=True)
class Threshold:
    """The stability threshold of an optimiser, per checkpoint: ``values`` (T,) (None where no
    threshold applies), ``formula`` ('2/eta', '38/eta', ...) and ``why`` (a sentence saying
    which threshold, or why there is none)."""

    values: np.ndarray | None
    formula: str
    why: str


def _rates(rates) -> np.ndarray | None:
    return None if rates is None else np.asarray(rates, dtype=np.float64)


def _per_rate(c: float, rates: np.ndarray) -> np.ndarray:
    """c / eta at each rate; NaN where the rate is 0 (a schedule decayed to its end): no step
    size bounds the sharpness there, so no threshold applies."""
    return np.divide(c, rates, out=np.full(rates.shape, np.nan), where=rates > 0)


def stability_threshold(optimizer: str | None, settings: dict, rates, operator: str) -> Threshold:
    """The threshold the sharpness of ``operator`` hovers at under ``optimizer`` (a Keras class
    name, with its ``get_config()`` ``settings``) at the learning rates ``rates`` (T,):

    - SGD: 2/eta; with heavy-ball momentum beta (Keras's ``momentum``) (2 + 2 beta)/eta, with
      Nesterov momentum (2 + 2 beta)/((1 + 2 beta) eta) (Cohen et al. 2021, appendix);
    - Adam, AdamW, for the preconditioned Hessian: (2 + 2 beta_1)/((1 - beta_1) eta), 38/eta for
      beta_1 = 0.9 (Cohen et al. 2022);
    - anything else, or no recorded rate: none (``values`` None, ``why`` says so).
    """
    rates = _rates(rates)
    name = (optimizer or "").lower()
    if optimizer is None or rates is None:
        return Threshold(None, "", "the trajectory file does not record the optimiser and its "
                                   "learning rate, so no stability threshold is drawn")
    if name == "sgd" and operator == HESSIAN:
        beta = float(settings.get("momentum") or 0.0)
        if beta == 0.0:
            return Threshold(_per_rate(2.0, rates), "2/eta", "gradient descent: 2/eta")
        if settings.get("nesterov"):
            c = (2 + 2 * beta) / (1 + 2 * beta)
            return Threshold(_per_rate(c, rates), f"{c:.4g}/eta",
                             f"Nesterov momentum {beta:g}: (2 + 2 beta)/((1 + 2 beta) eta)")
        c = 2 + 2 * beta
        return Threshold(_per_rate(c, rates), f"{c:.4g}/eta", f"heavy-ball momentum {beta:g}: "
                                                    f"(2 + 2 beta)/eta")
    if name in ADAM_LIKE and operator == PRECONDITIONED:
        beta_1 = float(settings.get("beta_1", 0.9))
        c = (2 + 2 * beta_1) / (1 - beta_1)
        return Threshold(_per_rate(c, rates), f"{c:.4g}/eta",
                         f"{optimizer} with beta_1 {beta_1:g}: (2 + 2 beta_1)/((1 - beta_1) eta)")
    if name in ADAM_LIKE:
        return Threshold(None, "", f"{optimizer}'s threshold bounds the preconditioned sharpness, "
                                   f"not the plain one drawn here; no threshold is drawn")
    return Threshold(None, "", f"no stability threshold is known for {optimizer}; none is drawn")


def adam_preconditioner(second_moments, iterations: int, beta_1: float, beta_2: float,
                        epsilon: float) -> np.ndarray | None:
    """Adam's diagonal preconditioner after ``iterations`` steps, as Keras's update applies it:
    w <- w - eta P^-1 m with P = (1 - beta_1^t) (sqrt(v_t / (1 - beta_2^t)) + epsilon /
    sqrt(1 - beta_2^t)), ``second_moments`` v_t (size,). That is Cohen et al.'s P =
    (1 - beta_1^t) diag(sqrt(v_hat_t) + epsilon) with Keras's epsilon, which is added before the
    bias correction. Returns P (size,) float64, or None before the first step (t = 0: no
    preconditioner yet)."""
    t = int(iterations)
    if t < 1:
        return None
    v = np.asarray(second_moments, dtype=np.float64)
    return (1 - beta_1 ** t) / np.sqrt(1 - beta_2 ** t) * (np.sqrt(np.maximum(v, 0.0)) + epsilon)


def preconditioned(matvec, scales: np.ndarray):
    """The operator D H D of ``matvec`` (H, per problem row) with D = diag(``scales``[row])
    (B, size): for D = P^-1/2 its eigenvalues are those of P^-1 H. A problem whose scales are
    NaN (no preconditioner) gets NaN products without asking ``matvec``."""
    def product(vectors, rows):
        rows = np.asarray(rows)
        d = scales[rows]
        ok = np.isfinite(d[:, 0])
        out = np.full(np.shape(vectors), np.nan)
        if ok.any():
            out[ok] = d[ok] * matvec(d[ok] * vectors[ok], rows[ok])
        return out
    return product


@dataclass(frozen=True)
class Spectra:
    """Per problem (checkpoint) b: the ``top_k`` largest eigenvalues ``values`` (B, k),
    descending (NaN where a product was not finite or fewer were found), Hutchinson's trace
    ``trace`` (B,) with its standard error ``stderr`` (B,), Lanczos steps (B,), and whether
    the wanted values converged (B,)."""

    values: np.ndarray
    trace: np.ndarray
    stderr: np.ndarray
    steps: np.ndarray
    converged: np.ndarray


def spectra(matvec, rngs: list, size: int, top_k: int, steps: int, tol: float,
            trace_vectors: int) -> Spectra:
    """The top ``top_k`` eigenvalues (Lanczos, at most ``steps`` products, until the wanted Ritz
    values' residuals are within ``tol`` of the spectrum's scale) and Hutchinson's trace
    (``trace_vectors`` Rademacher vectors) of B operators, ``matvec(vectors, rows)`` as in
    :func:`~landscape_dist.core.lanczos.lanczos`. ``rngs``: one generator per problem, so each
    problem's numbers depend on its own seed alone, never on the problems beside it."""
    n = len(rngs)
    starts = np.stack([rng.standard_normal(size) for rng in rngs])
    probes = np.stack([rademacher(rng, (trace_vectors, size)) for rng in rngs])
    result = lanczos(matvec, starts, steps, tol=tol, want=("top", top_k), check_every=2)
    values = np.full((n, top_k), np.nan)
    converged = np.zeros(n, dtype=bool)
    for b in range(n):
        if not np.isfinite(result.alpha[b, 0]):
            continue
        theta, _ = result.ritz(b)
        top = theta[::-1][:top_k]
        values[b, :len(top)] = top
        # a run stops early only once its wanted values converged or its Krylov space is
        # exhausted (then they are exact); one that used every step did not converge
        s = int(result.steps[b])
        converged[b] = len(top) == top_k and (s < result.alpha.shape[1] or s >= size)
    rows = np.repeat(np.arange(n), trace_vectors)
    flat = probes.reshape(n * trace_vectors, size)
    forms = np.einsum("bn,bn->b", flat, matvec(flat, rows)).reshape(n, trace_vectors)
    trace, stderr = np.empty(n), np.empty(n)
    for b in range(n):
        trace[b], stderr[b] = hutchinson(forms[b])
    return Spectra(values, trace, stderr, result.steps.copy(), converged)


def checkpoint_rng(seed: int, run: int, index: int) -> np.random.Generator:
    """The generator of one checkpoint's start vector and probes: (seed, run, checkpoint index)."""
    return np.random.default_rng([int(seed), int(run), int(index)])


def chosen(count: int, every: int) -> np.ndarray:
    """Indices of every ``every``-th of ``count`` checkpoints, the first and the last always."""
    picked = np.arange(0, count, every)
    return picked if picked[-1] == count - 1 else np.append(picked, count - 1)
