"""The analyses at the centre and along a training path, as configured: the curvature (the
Hessian's spectrum at the centre), the sharpness of many checkpoints, and flatness measures; each
a frozen dataclass checking its own fields."""

from __future__ import annotations

from dataclasses import dataclass

from .rules import SettingError, check_finite, check_integers, check_seeds, is_int, must

MAX_ASCENT_BYTES = 4 << 30  # the points and gradients of an adaptive-sharpness ascent, at most
FLATNESS_MEASURES = ("epsilon_sharpness", "adaptive_sharpness", "adaptive_sharpness_inf",
                     "pac_bayes", "pac_bayes_magnitude")


@dataclass(frozen=True)
class FlatnessConfig:
    """Flatness measures at the centre (``curvature.flatness``), each by its published definition:
    ``epsilon_sharpness`` (Keskar et al. 2017: the box |z_i| <= epsilon (|w_i| + 1)),
    ``adaptive_sharpness`` and ``adaptive_sharpness_inf`` (Kwon et al. 2021: the ball
    ||z / (|w| + eta)||_p <= rho, p = 2 and infinity), ``pac_bayes`` and ``pac_bayes_magnitude``
    (Jiang et al. 2020: the largest sigma whose Gaussian perturbations raise the mean loss by at
    most ``deviation``; ``samples`` perturbations, bisected to a factor 1 + ``tol``; the
    magnitude-aware one has the variance sigma^2 w_i^2 + ``floor``^2). ``iterations`` and
    ``starts``: of each maximisation."""

    measures: tuple[str, ...] = ("epsilon_sharpness", "adaptive_sharpness", "pac_bayes")
    epsilon: float = 1e-3  # Keskar et al. report 1e-3 and 5e-4
    rho: float = 0.5  # ASAM's radius for its CIFAR-10 runs
    eta: float = 0.01  # ASAM's eta
    iterations: int = 10
    starts: int = 1
    deviation: float = 0.1  # Jiang et al.'s bound on the perturbed loss's rise
    samples: int = 32
    floor: float = 1e-3  # Jiang et al.'s epsilon in the magnitude-aware variance
    tol: float = 0.01
    seed: int = 0

    def __post_init__(self):
        check_finite(self)
        if isinstance(self.measures, list):
            object.__setattr__(self, "measures", tuple(self.measures))
        measures = self.measures
        if (not isinstance(measures, tuple) or not measures
                or any(m not in FLATNESS_MEASURES for m in measures)
                or len(set(measures)) != len(measures)):
            raise must("measures", f"a list of distinct names among {list(FLATNESS_MEASURES)}",
                       list(measures) if isinstance(measures, tuple) else measures)
        for key in ("epsilon", "rho", "deviation"):
            if not isinstance(getattr(self, key), (int, float)) or getattr(self, key) <= 0:
                raise must(key, "a number > 0", getattr(self, key))
        for key in ("eta", "floor"):
            if not isinstance(getattr(self, key), (int, float)) or getattr(self, key) < 0:
                raise must(key, "a number >= 0", getattr(self, key))
        check_integers(self, (("iterations", 1), ("starts", 1), ("samples", 2)))
        if not isinstance(self.tol, (int, float)) or not 0 < self.tol < 1:
            raise must("tol", "a number between 0 and 1 (the relative width at which the "
                       "bisection stops)", self.tol)
        if not is_int(self.seed):
            raise must("seed", "an integer", self.seed)

    def check_for(self, size: int) -> None:
        """Refuse an adaptive-sharpness ascent whose ``starts`` points, with their gradients and
        steps (about four arrays of starts x size floats), would not fit in
        :data:`MAX_ASCENT_BYTES`; asked once the model is known, before any loss is evaluated."""
        need = 4 * self.starts * size * 8
        if any(m.startswith("adaptive_sharpness") for m in self.measures) \
                and need > MAX_ASCENT_BYTES:
            raise must("starts", f"small enough that the adaptive sharpness's points and "
                       f"gradients (4 x {{at}}starts x {size} weights x 8 bytes = "
                       f"{need / 2 ** 30:.3g} GiB) fit in {MAX_ASCENT_BYTES >> 30} GiB",
                       self.starts, "Lower {at}starts.")


@dataclass(frozen=True)
class CurvatureConfig:
    """The Hessian at the centre (``landscape-dist curvature``, and in ``run`` when the section
    is given): top eigenvalues and the most negative one by Lanczos, the trace by Hutchinson's
    estimator, the spectral density by stochastic Lanczos quadrature, each layer's top
    eigenvalue."""

    top_k: int = 5
    steps: int = 150  # Lanczos steps at most for the eigenvalues (each one product)
    tol: float = 1e-6  # relative residual at which a Ritz value counts as converged
    trace_vectors: int = 100
    density_vectors: int = 8
    density_steps: int = 80
    density_width: float = 0.01  # Gaussian width of each node, relative to the spectrum's span
    per_layer: bool = True
    seed: int = 0
    flatness: FlatnessConfig | None = None  # None: no flatness measures (they cost more products)

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        check_integers(self, (("top_k", 1), ("steps", 2), ("trace_vectors", 2),
                              ("density_vectors", 1), ("density_steps", 2)))
        if self.steps <= self.top_k:
            raise must("steps", f"greater than {{at}}top_k={self.top_k}", self.steps)
        if not 0 < self.tol < 1:
            raise must("tol", "a number between 0 and 1 (a relative tolerance)", self.tol)
        if not 0 < self.density_width < 1:
            raise must("density_width", "a number between 0 and 1 (a fraction of the spectrum's "
                       "span)", self.density_width)
        if not is_int(self.seed):
            raise must("seed", "an integer", self.seed)

    def check_for(self, size: int) -> None:
        """Refuse asking for more eigenvalues than a model of ``size`` weights has (its Hessian
        is size x size); asked once the model is known, before any product is computed."""
        if self.top_k > size:
            raise must("top_k", f"at most the model's {size} weights (its Hessian has {size} "
                       f"eigenvalues)", self.top_k, f"Set {{at}}top_k to {size} or fewer."
                       ).under("curvature")  # the section it always is in a configuration
        if self.flatness is not None:
            try:
                self.flatness.check_for(size)
            except SettingError as err:
                raise err.under("curvature.flatness") from None


SHARPNESS_OPERATORS = ("auto", "hessian")
MAX_LANCZOS_BYTES = 4 << 30  # the Lanczos bases of one batch of checkpoints, at most


@dataclass(frozen=True)
class SharpnessConfig:
    """Sharpness along training (``landscape-dist sharpness``, and in ``run`` when the section is
    given): at every ``every``-th recorded checkpoint of the training runs ``runs`` (null: all),
    the ``top_k`` largest eigenvalues of the Hessian (Lanczos), its trace (Hutchinson), the
    gradient norm, the loss and metrics. ``operator``: ``auto`` takes Adam's preconditioned
    Hessian where the optimiser's state was recorded, ``hessian`` always the plain one.
    ``batch``: checkpoints whose Lanczos runs advance side by side (one product each per step,
    spread over the workers)."""

    every: int = 1
    runs: tuple[int, ...] | None = None
    top_k: int = 1
    steps: int = 100  # Lanczos steps at most (each one product)
    tol: float = 1e-6  # relative residual at which the top eigenvalues count as converged
    trace_vectors: int = 20
    operator: str = "auto"
    batch: int = 8
    seed: int = 0

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        check_integers(self, (("every", 1), ("top_k", 1), ("steps", 2), ("trace_vectors", 2),
                              ("batch", 1)))
        if self.steps <= self.top_k:
            raise must("steps", f"greater than {{at}}top_k={self.top_k}", self.steps)
        if not 0 < self.tol < 1:
            raise must("tol", "a number between 0 and 1 (a relative tolerance)", self.tol)
        if self.operator not in SHARPNESS_OPERATORS:
            raise must("operator", f"one of {SHARPNESS_OPERATORS}", self.operator)
        if self.runs is not None and (not self.runs or len(set(self.runs)) != len(self.runs)
                                      or any(not is_int(r) or r < 0 for r in self.runs)):
            raise must("runs", "a list of distinct training run indices >= 0 (0: the first "
                       "run), or null for every recorded run", list(self.runs))
        if not is_int(self.seed):
            raise must("seed", "an integer", self.seed)

    def check_for(self, size: int) -> None:
        """Refuse what a model of ``size`` weights cannot give: more eigenvalues than it has, or
        Lanczos bases or trace vectors of one batch beyond :data:`MAX_LANCZOS_BYTES`; asked once
        the model is known, before any product is computed."""
        if self.top_k > size:
            raise must("top_k", f"at most the model's {size} weights (its Hessian has {size} "
                       f"eigenvalues)", self.top_k, f"Set {{at}}top_k to {size} or fewer."
                       ).under("sharpness")
        need = self.batch * min(self.steps, size) * size * 8
        if need > MAX_LANCZOS_BYTES:
            raise must("batch", f"small enough that the Lanczos vectors of a batch ({{at}}batch x "
                       f"{{at}}steps x {size} weights x 8 bytes = {need / 2 ** 30:.3g} GiB) fit in "
                       f"{MAX_LANCZOS_BYTES >> 30} GiB", self.batch,
                       "Lower {at}batch or {at}steps.").under("sharpness")
        need = 2 * self.batch * self.trace_vectors * size * 8  # the probes and their products
        if need > MAX_LANCZOS_BYTES:
            raise must("trace_vectors", f"small enough that the trace's vectors of a batch and "
                       f"their products (2 x {{at}}batch x {{at}}trace_vectors x {size} weights x "
                       f"8 bytes = {need / 2 ** 30:.3g} GiB) fit in {MAX_LANCZOS_BYTES >> 30} GiB",
                       self.trace_vectors, "Lower {at}trace_vectors or {at}batch."
                       ).under("sharpness")
