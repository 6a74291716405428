"""The Hessian's spectrum at a point, from any product operator: the top-k eigenpairs and the
most negative one (Lanczos), each layer's top eigenvalue (the Hessian block of the layer's
tensors), Hutchinson's trace estimate with its standard error, and the spectral density by
stochastic Lanczos quadrature. Pure NumPy: ``matvec(vectors (m, size), rows) -> (m, size)`` is
passed in (the pool's products in a sweep, a dense matrix in the tests)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from ..config.schema import CurvatureConfig
from .flatness import summarise_flatness
from .lanczos import hutchinson, lanczos, quadrature, rademacher, ritz_pairs, spectral_density
from .layout import WeightLayout

_DENSITY_POINTS = 400  # where the spectral density is tabulated


def layer_groups(layout: WeightLayout) -> dict[str, np.ndarray]:
    """Each layer's entries of the flat weight vector (boolean (size,) masks), by layer name (the
    tensor paths up to their last '/', without the model's name), in layout order."""
    groups: dict[str, np.ndarray] = {}
    offsets = layout.offsets
    names = list(layout.names)
    firsts = {n.split("/", 1)[0] for n in names}
    if len(firsts) == 1 and all(n.count("/") >= 2 for n in names):
        names = [n.split("/", 1)[1] for n in names]  # the model's own name, the same everywhere
    for i, name in enumerate(names):
        layer = name.rsplit("/", 1)[0] if "/" in name else name
        mask = groups.setdefault(layer, np.zeros(layout.size, dtype=bool))
        mask[offsets[i]:offsets[i + 1]] = True
    return groups


@dataclass
class Eigen:
    """Top eigenpairs and the smallest eigenpair, with their residual norms and the run's length."""

    top_values: np.ndarray
    top_vectors: np.ndarray
    top_residuals: np.ndarray
    min_value: float
    min_vector: np.ndarray
    min_residual: float
    steps: int
    converged: bool


def _residual(matvec, value, vector) -> float:
    return float(np.linalg.norm(matvec(vector[None])[0] - value * vector))


def centre_eigen(matvec, size: int, cfg: CurvatureConfig, rng: np.random.Generator,
                 residuals: bool = True) -> Eigen:
    """The ``cfg.top_k`` largest eigenvalues (descending) and eigenvectors of the operator, and its
    smallest eigenpair, by one Lanczos run with full re-orthogonalisation (until the wanted Ritz
    values converge to ``cfg.tol``, at most ``cfg.steps`` products). ``residuals``: check each
    reported pair with one more product, ||H v - lambda v||."""
    cfg.check_for(size)
    k = cfg.top_k
    result = lanczos(matvec, rng.standard_normal((1, size)), cfg.steps, tol=cfg.tol,
                     want=("both", k), keep_basis=True)
    values, vectors = ritz_pairs(result, k)
    low_values, low_vectors = ritz_pairs(result, 1, largest=False)
    min_value, min_vector = float(low_values[0]), low_vectors[0]
    top_res = np.array([_residual(matvec, v, x) for v, x in zip(values, vectors)]) if residuals \
        else np.full(k, np.nan)
    min_res = _residual(matvec, min_value, min_vector) if residuals else float("nan")
    scale = max(abs(values[0]), abs(min_value), np.finfo(float).tiny)
    # fewer Ritz values than asked for (the Krylov space ended early, on repeated eigenvalues):
    # the top k were not all found, whatever the residuals of those that were
    converged = bool(len(values) == cfg.top_k and np.all(top_res <= 10 * cfg.tol * scale)
                     and min_res <= 10 * cfg.tol * scale) if residuals else False
    return Eigen(values, vectors, top_res, min_value, min_vector, min_res, int(result.steps[0]),
                 converged)


def layer_top(matvec, layout: WeightLayout, cfg: CurvatureConfig, rng: np.random.Generator):
    """The top eigenvalue of each layer's Hessian block (rows and columns of its tensors), all
    layers' Lanczos runs advancing together; returns (names, values (L,), steps (L,))."""
    groups = layer_groups(layout)
    names = list(groups)
    masks = np.stack([groups[n] for n in names]).astype(np.float64)
    start = rng.standard_normal((len(names), layout.size)) * masks

    def block(vectors, rows):
        return matvec(vectors * masks[rows], rows) * masks[rows]

    steps = int(min(cfg.steps, masks.sum(axis=1).max()))  # a block has at most its entries' steps
    result = lanczos(block, start, steps, tol=cfg.tol, want=("top", 1))
    values = np.array([result.ritz(b)[0][-1] for b in range(len(names))])
    return names, values, result.steps


def trace_estimate(matvec, size: int, cfg: CurvatureConfig, rng: np.random.Generator):
    """Hutchinson's estimate of the trace from ``cfg.trace_vectors`` Rademacher vectors:
    (estimate, standard error, the quadratic forms v^T H v)."""
    vectors = rademacher(rng, (cfg.trace_vectors, size))
    forms = np.einsum("bn,bn->b", vectors, matvec(vectors, np.arange(len(vectors))))
    estimate, stderr = hutchinson(forms)
    return estimate, stderr, forms


def density(matvec, size: int, cfg: CurvatureConfig, rng: np.random.Generator):
    """Stochastic Lanczos quadrature: nodes and weights (V, m) from ``cfg.density_vectors``
    Rademacher starts of ``cfg.density_steps`` steps, and the density on a grid spanning the
    nodes: (nodes, weights, grid, density, sigma)."""
    result = lanczos(matvec, rademacher(rng, (cfg.density_vectors, size)), cfg.density_steps)
    nodes, weights = quadrature(result)
    used = nodes[weights > 0]
    lo, hi = float(used.min()), float(used.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    sigma = cfg.density_width * span
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, _DENSITY_POINTS)
    return nodes, weights, grid, spectral_density(nodes, weights, grid, sigma), sigma


def analyse(matvec, layout: WeightLayout, cfg: CurvatureConfig) -> dict:
    """Everything the curvature command computes, from an operator ``matvec(vectors, rows)``;
    seeded by ``cfg.seed`` (one stream per part, so each part is reproducible alone)."""
    cfg.check_for(layout.size)  # before any product is computed
    seeds = np.random.SeedSequence(cfg.seed).spawn(4)
    t0 = time.perf_counter()
    out = {"eigen": centre_eigen(matvec, layout.size, cfg, np.random.default_rng(seeds[0]))}
    out["trace"] = trace_estimate(matvec, layout.size, cfg, np.random.default_rng(seeds[1]))
    out["density"] = density(matvec, layout.size, cfg, np.random.default_rng(seeds[2]))
    if cfg.per_layer:
        out["layers"] = layer_top(matvec, layout, cfg, np.random.default_rng(seeds[3]))
    out["seconds"] = time.perf_counter() - t0
    return out


def summarise(result: dict, cfg: CurvatureConfig, products: int) -> dict:
    """The plain numbers of an analysis, for summary.json."""
    eigen = result["eigen"]
    estimate, stderr, _ = result["trace"]
    summary = {
        "top_eigenvalues": [float(v) for v in eigen.top_values],
        "min_eigenvalue": float(eigen.min_value),
        "ratio_min_max": abs(float(eigen.min_value) / float(eigen.top_values[0]))
        if eigen.top_values[0] != 0 else None,
        "residuals": {"top": [float(r) for r in eigen.top_residuals], "min": eigen.min_residual},
        "lanczos_steps": eigen.steps, "converged": eigen.converged,
        "trace": {"estimate": estimate, "stderr": stderr, "vectors": cfg.trace_vectors},
        "density": {"vectors": cfg.density_vectors, "steps": cfg.density_steps,
                    "sigma": float(result["density"][4])},
        "products": products, "seconds": round(result["seconds"], 3),
        "settings": dataclasses.asdict(cfg),
    }
    if "layers" in result:
        names, values, steps = result["layers"]
        summary["layers"] = {n: float(v) for n, v in zip(names, values)}
    if "flatness" in result:  # each measure with its source and how it was computed
        flatness = result["flatness"]
        summary["flatness"] = summarise_flatness(flatness["measures"], cfg.flatness)
        summary["flatness_cost"] = {"gradient_rows": flatness["gradient_rows"],
                                    "loss_rows": flatness["loss_rows"],
                                    "seconds": round(flatness["seconds"], 3)}
    return summary
