"""Flatness measures at a point, each by its published definition, from callables that evaluate
the loss: ``value_and_grad(rows (m, size)) -> (loss (m,), gradient (m, size))`` and
``losses(rows (m, size)) -> (m,)`` (the pool's jobs in the ``curvature`` command, a quadratic in
the tests). Pure NumPy (and SciPy's L-BFGS-B).

- :func:`epsilon_sharpness`: Keskar et al., *On Large-Batch Training for Deep Learning:
  Generalization Gap and Sharp Minima* (ICLR 2017), in the full space.
- :func:`adaptive_sharpness`: Kwon et al., *ASAM: Adaptive Sharpness-Aware Minimization for
  Scale-Invariant Learning of Deep Neural Networks* (ICML 2021), element-wise operator.
- :func:`pac_bayes_sigma`: the PAC-Bayes flatness of Jiang et al., *Fantastic Generalization
  Measures and Where to Find Them* (ICLR 2020), and its magnitude-aware variant.

Every value reported is the loss evaluated at a point that was tried (a maximisation reports the
best point it evaluated, a lower bound of the true maximum), never an interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config.analysis import FLATNESS_MEASURES, FlatnessConfig

_NOISE_BYTES = 1 << 28  # the Gaussian perturbations of one call of ``losses`` (float64) at most
_BRACKET_STEPS = 60  # doublings (halvings) of sigma before giving up the search for a bracket


@dataclass
class Sharpness:
    """The result of a maximisation of L(w + z) - L(w) over a neighbourhood of w.

    ``value``: the measure as its source defines it; ``increase``: the largest L(w + z) - L(w)
    evaluated; ``loss``: L(w); ``perturbation``: that z (size,); ``evaluations``: loss (and
    gradient) evaluations; ``iterations``: optimiser iterations, summed over the starts;
    ``diverged``: evaluations whose loss was not finite (left out of the maximum, which is then
    the best finite one)."""

    value: float
    increase: float
    loss: float
    perturbation: np.ndarray
    evaluations: int
    iterations: int
    method: str
    diverged: int = 0


@dataclass
class PacBayes:
    """The largest sigma found with E_u[L(w + u)] - L(w) <= ``deviation`` (``sigma``; the
    smallest found above it: ``sigma_above``), the deviation estimated at each, the measure
    1/sigma^2 (inf when sigma is 0), and what it cost. ``bracketed``: False when no sigma up to
    the last one tried exceeded the deviation (``sigma`` is then only a lower bound)."""

    sigma: float
    sigma_above: float
    deviation_at_sigma: float
    deviation_above: float
    loss: float
    evaluations: int
    steps: int
    bracketed: bool
    trials: list = field(default_factory=list)  # (sigma, estimated deviation) in the order tried

    @property
    def measure(self) -> float:
        """1/sigma^2, the quantity that enters the PAC-Bayes bound (inf for sigma 0)."""
        return float("inf") if self.sigma == 0 else 1.0 / self.sigma ** 2


def _best(best, increases, points):
    """The running best (increase, z) with the rows of evaluated ``increases`` (m,) at ``points``
    (m, size); diverged rows (NaN, inf) are left out."""
    finite = np.where(np.isfinite(increases), increases, -np.inf)
    i = int(np.argmax(finite))
    return (float(finite[i]), np.array(points[i])) if finite[i] > best[0] else best


def epsilon_sharpness(value_and_grad, w, epsilon: float, iterations: int = 10, starts: int = 1,
                      rng: np.random.Generator | None = None) -> Sharpness:
    """Keskar et al.'s epsilon-sharpness at ``w`` (size,) in the full space:

        100 * (max_{z in C} L(w + z) - L(w)) / (1 + L(w)),  C = {z : |z_i| <= eps (|w_i| + 1)}.

    Maximised by L-BFGS-B (SciPy, as Keskar et al.) in the box's own coordinates (z_i = r_i y_i,
    y in [-1, 1]^size, r = eps (|w| + 1)), from ``starts`` points drawn uniformly in the box, at
    most ``iterations`` iterations (and 3 x ``iterations`` evaluations) each. A convex loss has
    its maximum over a box at a vertex; several starts guard against a vertex that is only local.
    """
    from scipy.optimize import Bounds, minimize

    rng = rng if rng is not None else np.random.default_rng(0)
    w = np.asarray(w, np.float64)
    loss0, _ = value_and_grad(w[None])
    loss0 = float(loss0[0])
    radius = epsilon * (np.abs(w) + 1.0)
    best, evaluations, total_iterations = (0.0, np.zeros_like(w)), 1, 0  # z = 0 was evaluated
    diverged = 0

    def negated(y):
        nonlocal best, evaluations, diverged
        z = radius * y
        loss, grad = value_and_grad((w + z)[None])
        evaluations += 1
        best = _best(best, loss - loss0, z[None])
        value = float(loss[0])
        if not np.isfinite(value):  # a diverged point: away from it, the search goes on
            diverged += 1
            return np.inf, np.zeros_like(y)
        return -(value - loss0), -(radius * grad[0])

    bounds = Bounds(-np.ones(w.size), np.ones(w.size))
    for _ in range(starts):
        result = minimize(negated, rng.uniform(-1.0, 1.0, w.size), jac=True, method="L-BFGS-B",
                          bounds=bounds, options={"maxiter": iterations, "maxfun": 3 * iterations,
                                                  "ftol": 0.0, "gtol": 0.0})
        total_iterations += int(result.nit)
    increase, z = best
    return Sharpness(100.0 * increase / (1.0 + loss0), increase, loss0, z, evaluations,
                     total_iterations, "L-BFGS-B", diverged)


def _dual_step(g: np.ndarray, rho: float, p: float) -> np.ndarray:
    """The maximiser of <g, d> over ||d||_p <= rho, for each row of ``g`` (m, size): rho g/||g||
    for p = 2, rho sign(g) for p = inf (a zero row stays zero)."""
    if p == np.inf:
        return rho * np.sign(g)
    norms = np.linalg.norm(g, axis=1, keepdims=True)
    return np.divide(rho * g, norms, out=np.zeros_like(g), where=norms > 0)


def _random_in_sphere(rng, shape, rho: float, p: float) -> np.ndarray:
    """Points of the sphere ||d||_p = rho: random directions (p = 2), random vertices (p = inf)."""
    if p == np.inf:
        return rho * rng.choice([-1.0, 1.0], size=shape)
    return _dual_step(rng.standard_normal(shape), rho, 2.0)


def adaptive_sharpness(value_and_grad, w, rho: float, p: float = 2.0, eta: float = 0.01,
                       iterations: int = 10, starts: int = 1,
                       rng: np.random.Generator | None = None) -> Sharpness:
    """Kwon et al.'s adaptive sharpness at ``w`` (size,):

        max_{||T_w^-1 e||_p <= rho} L(w + e) - L(w),   T_w = diag(|w_i| + eta)

    (the element-wise normalisation operator with the small constant eta that keeps it
    invertible, as in their paper; eta = 0 gives diag(|w_i|)). ``p``: 2 or ``np.inf``.

    With e = T_w d the problem is a maximisation over the ball ||d||_p <= rho, solved by
    conditional-gradient ascent with unit steps: d_{k+1} maximises the linearisation at d_k over
    the ball (rho T g / ||T g||_2 for p = 2, rho sign(T g) for p = inf; the first is ASAM's own
    ascent step). For a convex loss every step increases it, and on a quadratic at its minimum
    the p = 2 iteration is the power method on T A T. Starts: the ascent step from w itself, and
    ``starts - 1`` random points of the sphere; all advance together (one call per iteration),
    ``iterations`` steps each.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    w = np.asarray(w, np.float64)
    scale = np.abs(w) + eta
    loss0, grad0 = value_and_grad(w[None])
    loss0 = float(loss0[0])
    first = _dual_step((scale * grad0[0])[None], rho, p)
    if not np.any(first):  # no gradient at all: a random first start
        first = _random_in_sphere(rng, (1, w.size), rho, p)
    d = np.concatenate([first, _random_in_sphere(rng, (starts - 1, w.size), rho, p)])
    best, evaluations, diverged = (0.0, np.zeros_like(w)), 1, 0  # e = 0, at w, was evaluated
    for k in range(iterations + 1):
        losses, grads = value_and_grad(w + scale * d)
        evaluations += len(d)
        diverged += int(np.sum(~np.isfinite(losses)))
        best = _best(best, losses - loss0, scale * d)
        if k == iterations:
            break
        step = _dual_step(scale * np.nan_to_num(grads), rho, p)
        if np.allclose(step, d, rtol=0.0, atol=1e-12 * rho):
            break  # a fixed point of the ascent: every start has converged
        d = step
    increase, e = best
    return Sharpness(increase, increase, loss0, e, evaluations, k * len(d),
                     "conditional-gradient ascent", diverged)


def _noise(seeds, size: int, rows: slice) -> np.ndarray:
    """The standard Gaussian vectors of samples ``rows``, each from its own seed (drawn again
    for every sigma, so the same vectors serve every sigma without being kept)."""
    return np.stack([np.random.default_rng(s).standard_normal(size) for s in seeds[rows]])


def mean_deviation(losses, w, loss0: float, sigma: float, seeds, floor: float | None = None,
                   chunk: int | None = None) -> tuple[float, int]:
    """The Monte Carlo estimate of E_u[L(w + u)] - L(w) over the samples of ``seeds`` and the
    rows it evaluated: u = sigma z (isotropic, ``floor`` None) or u_i = z_i sqrt(sigma^2 w_i^2
    + floor^2) (magnitude-aware), z ~ N(0, I)."""
    w = np.asarray(w, np.float64)
    spread = sigma if floor is None else np.sqrt((sigma * w) ** 2 + floor ** 2)
    chunk = chunk or max(1, _NOISE_BYTES // (8 * w.size))
    total = 0.0
    for start in range(0, len(seeds), chunk):
        rows = slice(start, start + chunk)
        total += float(np.sum(losses(w + spread * _noise(seeds, w.size, rows))))
    return total / len(seeds) - loss0, len(seeds)


def pac_bayes_sigma(losses, w, deviation: float, samples: int, seed: int = 0,
                    magnitude: bool = False, floor: float = 1e-3, tol: float = 0.01) -> PacBayes:
    """The largest sigma with E_{u}[L(w + u)] - L(w) <= ``deviation``, by bisection:

    - isotropic (``magnitude`` False): u ~ N(0, sigma^2 I), Jiang et al.'s PAC-Bayes flatness,
      whose measure is 1/sigma^2;
    - magnitude-aware: u_i ~ N(0, sigma^2 w_i^2 + floor^2) (their ``floor`` is 1e-3), measure
      1/sigma^2 as well.

    The expectation is a Monte Carlo mean over ``samples`` Gaussian vectors seeded by ``seed``,
    the same vectors for every sigma (common random numbers: the estimate is then a smooth
    function of sigma, and on a quadratic exactly sigma^2/2 times the mean of z^T A z). A
    bracket is found by doubling or halving sigma from 1% of the root mean square weight
    (isotropic) or from 1% (magnitude-aware), then bisected on the log scale until the two ends
    are within a factor 1 + ``tol``.
    """
    w = np.asarray(w, np.float64)
    seeds = np.random.SeedSequence(seed).spawn(samples)
    loss0 = float(losses(w[None])[0])
    evaluations, trials = 1, []

    def deviation_at(sigma):
        nonlocal evaluations
        value, rows = mean_deviation(losses, w, loss0, sigma, seeds, floor if magnitude else None)
        evaluations += rows  # a diverged sample makes the mean NaN: it counts as too large
        trials.append((sigma, value))
        return value

    start = 0.01 if magnitude else 0.01 * (float(np.sqrt(np.mean(w ** 2))) or 1.0)
    below, above, dev_below, dev_above = 0.0, None, 0.0, float("nan")
    sigma, dev = start, deviation_at(start)
    for _ in range(_BRACKET_STEPS):  # walk until a sigma on each side of the deviation is known
        if dev <= deviation:
            below, dev_below = sigma, dev
            if above is not None:
                break
            sigma *= 2.0
        else:
            above, dev_above = sigma, dev
            if below > 0 or (magnitude and sigma < 1e-12):
                break
            sigma /= 2.0
        dev = deviation_at(sigma)
    if above is None:  # the loss never deviated enough: sigma is a lower bound
        return PacBayes(below, float("inf"), dev_below, float("nan"), loss0, evaluations,
                        len(trials), False, trials)
    steps = 0
    while below > 0 and above / below > 1.0 + tol:
        sigma = float(np.sqrt(below * above))
        dev = deviation_at(sigma)
        if dev <= deviation:
            below, dev_below = sigma, dev
        else:
            above, dev_above = sigma, dev
        steps += 1
    return PacBayes(below, above, dev_below, dev_above, loss0, evaluations, len(trials), True,
                    trials)


SOURCES = {
    "epsilon_sharpness": "Keskar et al., On Large-Batch Training for Deep Learning: Generalization "
                         "Gap and Sharp Minima, ICLR 2017: 100 (max_{|z_i| <= epsilon (|w_i| + 1)} "
                         "L(w + z) - L(w)) / (1 + L(w)), full space",
    "adaptive_sharpness": "Kwon et al., ASAM: Adaptive Sharpness-Aware Minimization for "
                          "Scale-Invariant Learning of Deep Neural Networks, ICML 2021: "
                          "max_{||z / (|w| + eta)||_2 <= rho} L(w + z) - L(w)",
    "adaptive_sharpness_inf": "Kwon et al., ICML 2021 (ASAM), p = infinity: "
                              "max_{|z_i| <= rho (|w_i| + eta)} L(w + z) - L(w)",
    "pac_bayes": "Jiang et al., Fantastic Generalization Measures and Where to Find Them, ICLR "
                 "2020, PAC-Bayes flatness: 1/sigma^2, sigma the largest with "
                 "E_{u ~ N(0, sigma^2 I)}[L(w + u)] - L(w) <= deviation (here L is the loss; "
                 "they bound the training error's rise)",
    "pac_bayes_magnitude": "Jiang et al., ICLR 2020, magnitude-aware PAC-Bayes flatness: "
                           "1/sigma^2, sigma the largest with E_u[L(w + u)] - L(w) <= deviation, "
                           "u_i ~ N(0, sigma^2 w_i^2 + floor^2)",
}


def measure_flatness(value_and_grad, losses, w, cfg: FlatnessConfig) -> dict:
    """Every measure ``cfg.measures`` names at ``w`` (size,): name ->
    :class:`Sharpness` or :class:`PacBayes`. Each measure draws from its own stream of
    ``cfg.seed``, so each is reproducible alone."""
    streams = np.random.SeedSequence(cfg.seed).spawn(len(FLATNESS_MEASURES))
    seeds = dict(zip(FLATNESS_MEASURES, streams))
    out = {}
    for name in cfg.measures:
        rng = np.random.default_rng(seeds[name])
        if name == "epsilon_sharpness":
            out[name] = epsilon_sharpness(value_and_grad, w, cfg.epsilon, cfg.iterations,
                                          cfg.starts, rng)
        elif name.startswith("adaptive_sharpness"):
            p = np.inf if name.endswith("_inf") else 2.0
            out[name] = adaptive_sharpness(value_and_grad, w, cfg.rho, p, cfg.eta, cfg.iterations,
                                           cfg.starts, rng)
        else:
            out[name] = pac_bayes_sigma(losses, w, cfg.deviation, cfg.samples,
                                        int(rng.integers(2 ** 63)),
                                        magnitude=name.endswith("_magnitude"), floor=cfg.floor,
                                        tol=cfg.tol)
    return out


def _number(x: float) -> float | None:
    """A float for JSON: None for an infinity or NaN (standard JSON has neither)."""
    return float(x) if np.isfinite(x) else None


def summarise_flatness(results: dict, cfg: FlatnessConfig) -> dict:
    """The plain numbers of :func:`measure_flatness`'s results, each with its source and how it
    was computed, for summary.json."""
    out = {}
    for name, r in results.items():
        if isinstance(r, PacBayes):
            entry = {"value": _number(r.measure), "sigma": r.sigma,
                     "sigma_above": _number(r.sigma_above), "deviation": cfg.deviation,
                     "deviation_at_sigma": _number(r.deviation_at_sigma),
                     "bracketed": r.bracketed, "samples": cfg.samples, "tol": cfg.tol,
                     "sigmas_tried": r.steps, "loss": r.loss, "loss_evaluations": r.evaluations,
                     "method": "bisection on log sigma, Monte Carlo mean over the same seeded "
                               "Gaussian samples for every sigma"}
            if name.endswith("_magnitude"):
                entry["floor"] = cfg.floor
        else:
            entry = {"value": _number(r.value), "increase": _number(r.increase), "loss": r.loss,
                     "method": r.method, "iterations": r.iterations, "starts": cfg.starts,
                     "gradient_evaluations": r.evaluations, "diverged_evaluations": r.diverged}
            if name == "epsilon_sharpness":
                entry["epsilon"] = cfg.epsilon
            else:
                entry.update(rho=cfg.rho, eta=cfg.eta, p="inf" if name.endswith("_inf") else 2)
        entry["source"] = SOURCES[name]
        out[name] = entry
    return out
