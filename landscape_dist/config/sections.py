"""The sections of a configuration other than its slices: the model, the data, the pool,
evaluation and figures; each a frozen dataclass checking its own fields. Training is in
:mod:`.training`, the curvature, sharpness and flatness at the centre in :mod:`.analysis`; their
names are importable from here too."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..registry import BACKENDS, OUTPUT_FORMATS, OutputFormat
from .rules import MAX_LEVELS, check_finite, check_seeds, is_int, must
# re-exported: these sections' names have long been imported from here
from .analysis import (FLATNESS_MEASURES, MAX_ASCENT_BYTES, MAX_LANCZOS_BYTES,  # noqa: F401
                       SHARPNESS_OPERATORS, CurvatureConfig, FlatnessConfig, SharpnessConfig)
from .training import (RECORD_UNITS, SCHEDULE_KINDS, TRAIN_RUN_KEYS, ScheduleConfig,  # noqa: F401
                       TrainConfig)

EVAL_MODES = ("auto", "vectorized", "loop")
SHOW_PATH = ("auto", "always", "never")
MAX_DPI = 1200  # a 6.4-inch figure at 1200 dpi is already 7680 pixels wide
MAX_FRAMES = 10_000  # an animation's frames are drawn one by one: hours of drawing beyond this


@dataclass(frozen=True)
class ModelConfig:
    """Where the model comes from and where its centre weights are."""

    source: str = "parabola"
    centre: str | None = None
    unsafe_deserialization: bool = False


@dataclass(frozen=True)
class DataConfig:
    """Where the evaluation data comes from (a built-in name, an .npz file, a directory with
    x.npy and y.npy, or module:function) and how many shards workers split it into. ``source``
    may name several datasets (``{train: ..., test: ...}``): every point is then evaluated on
    each, and every quantity is kept per dataset (``train/loss``, ``test/loss``...)."""

    source: str | dict[str, str] = "parabola"
    shards: int = 1

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        if not is_int(self.shards) or self.shards < 1:
            raise must("shards", "an integer >= 1", self.shards)
        if isinstance(self.source, dict):
            for key in self.source:
                if not key or not key.replace("_", "").replace("-", "").isalnum():
                    raise must("source", "a mapping whose dataset names are letters, digits, '-' "
                               "or '_'", dict(self.source))

    @property
    def datasets(self) -> dict[str, str] | None:
        """Dataset name -> source when several are named, else None."""
        return dict(self.source) if isinstance(self.source, dict) else None


@dataclass(frozen=True)
class ClusterConfig:
    """The pool: which execution backend runs the workers (``ray``, ``local`` in this process, or
    one registered), where Ray runs, and how many workers with what resources."""

    backend: str = "ray"
    address: str | None = None
    num_workers: int | None = None  # None: one per GPU when workers use GPUs, else one per CPU
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: 1 if the Ray cluster has GPUs, else 0
    max_tile_retries: int = 3

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        backends = BACKENDS.names()
        if self.backend not in backends:
            raise must("backend", f"one of {backends}", self.backend)
        n = self.num_workers
        if n is not None and (not is_int(n) or n < 1):
            raise must("num_workers", "an integer >= 1 or null (automatic)", n)
        if not self.cpus_per_worker > 0:
            raise must("cpus_per_worker", "a number > 0", self.cpus_per_worker)
        if self.gpus_per_worker is not None and not self.gpus_per_worker >= 0:
            raise must("gpus_per_worker", "a number >= 0 or null (automatic)", self.gpus_per_worker)
        if self.max_tile_retries < 0:
            raise must("max_tile_retries", "an integer >= 0", self.max_tile_retries)

    @property
    def threads_per_worker(self) -> int:
        return max(1, int(self.cpus_per_worker))

    @property
    def resolved(self) -> bool:
        return self.num_workers is not None and self.gpus_per_worker is not None

    def resolve(self, resources: dict) -> "ClusterConfig":
        """Concrete worker count and GPUs per worker for a Ray cluster with ``resources``
        (``ray.cluster_resources()``): by default one worker per GPU where there are GPUs,
        else one per ``cpus_per_worker`` CPUs."""
        gpus = float(resources.get("GPU", 0.0))
        per_gpu = self.gpus_per_worker if self.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
        n = self.num_workers
        if n is None:
            if per_gpu > 0:
                n = int(gpus // per_gpu + 1e-9)
            else:
                n = int(float(resources.get("CPU", 1.0)) // self.cpus_per_worker + 1e-9)
            n = max(1, n)
        return dataclasses.replace(self, num_workers=n, gpus_per_worker=float(per_gpu))

    @property
    def need(self) -> tuple[float, float]:
        """(CPUs, GPUs) the whole pool asks for; the config must be resolved."""
        return (self.num_workers * self.cpus_per_worker, self.num_workers * self.gpus_per_worker)


@dataclass(frozen=True)
class EvaluationConfig:
    """How each worker evaluates: examples per data batch, memory for points per call, method;
    and for Hessian eigenvalues at grid points, the Lanczos runs' length, tolerance and start."""

    batch_size: int | None = None
    memory_budget_mb: float = 256.0
    mode: str = "auto"
    tune: bool = True  # strategies timed on a second job (one worker per identical group), fastest kept
    tune_share: float | None = 0.1  # ... within this share of the sweep's time (null: no bound)
    tuning_cache: str | None = "default"  # where choices are kept: 'default', a directory, 'none'
    lanczos_steps: int = 80  # Hessian eigenvalues at grid points: at most this many products each
    lanczos_tol: float = 1e-5  # ... until the extreme Ritz values' residuals are this relative
    lanczos_seed: int = 0  # the start vector of every point's Lanczos run
    examples: int | None = None  # drafts: a fixed, seeded random subset of this many examples
    examples_seed: int = 0

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        if self.examples is not None and (not is_int(self.examples) or self.examples < 2):
            raise must("examples", "an integer >= 2 (a subset for drafts) or null (every example)",
                       self.examples)
        if not is_int(self.examples_seed):
            raise must("examples_seed", "an integer", self.examples_seed)
        if not is_int(self.lanczos_steps) or self.lanczos_steps < 2:
            raise must("lanczos_steps", "an integer >= 2", self.lanczos_steps)
        if not 0 < self.lanczos_tol < 1:
            raise must("lanczos_tol", "a number between 0 and 1 (a relative tolerance)",
                       self.lanczos_tol)
        if not is_int(self.lanczos_seed):
            raise must("lanczos_seed", "an integer", self.lanczos_seed)
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or self.batch_size < 1):
            raise must("batch_size", "an integer >= 1 or null (whole dataset)", self.batch_size)
        if not self.memory_budget_mb > 0:
            raise must("memory_budget_mb", "a number > 0", self.memory_budget_mb)
        if self.mode not in EVAL_MODES:
            raise must("mode", f"one of {EVAL_MODES}", self.mode)
        if self.tune_share is not None and (isinstance(self.tune_share, bool) or not isinstance(
                self.tune_share, (int, float)) or not 0 < self.tune_share <= 1):
            raise must("tune_share", "a number > 0 and <= 1 (a share of the sweep's time) or "
                       "null (no bound)", self.tune_share)
        if self.tuning_cache is not None and (not isinstance(self.tuning_cache, str)
                                              or not self.tuning_cache.strip()):
            raise must("tuning_cache", "'default' (the user's cache directory), a directory or "
                       "'none'", self.tuning_cache)


@dataclass(frozen=True)
class PlotConfig:
    """Figures and files: contour levels, log spacing, the output formats, path overlay, the
    3-D views' clipping and height scale, the animation's length."""

    levels: int = 25
    log_levels: bool = True
    format: str = "png"
    formats: tuple[str, ...] = ()  # several output formats; empty: just ``format``
    show_path: str = "auto"
    dpi: int = 120
    preview_every_s: float | None = None  # redraw OUT/<slice>_preview.png while sweeping
    zmin: float | None = None  # 3-D views and meshes: values below are clipped (Li et al.'s vmin)
    zmax: float | None = None  # ... and above (Li et al.'s zmax); null: no clipping
    log_z: bool = False  # 3-D views and meshes: heights on a log10 scale
    animation_frames: int = 60
    animation_seconds: float = 6.0
    options: dict = dataclasses.field(default_factory=dict)  # format name -> its own settings

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        if not 2 <= self.levels <= MAX_LEVELS:
            raise must("levels", f"an integer from 2 to {MAX_LEVELS}", self.levels)
        if not 10 <= self.dpi <= MAX_DPI:
            raise must("dpi", f"an integer from 10 to {MAX_DPI}", self.dpi)
        formats = OUTPUT_FORMATS.names()
        if self.format not in formats:
            raise must("format", f"one of {formats}", self.format)
        for i, name in enumerate(self.formats):
            if name not in formats:
                raise must(f"formats.{i}", f"one of {formats}", name)
        if self.zmin is not None and self.zmax is not None and not self.zmin < self.zmax:
            raise must("zmax", f"greater than {{at}}zmin={self.zmin}", self.zmax)
        if not is_int(self.animation_frames) or self.animation_frames < 2:
            raise must("animation_frames", "an integer >= 2", self.animation_frames)
        if self.animation_frames > MAX_FRAMES:
            raise must("animation_frames", f"at most {MAX_FRAMES} (each frame is drawn on its own)",
                       self.animation_frames)
        if not self.animation_seconds > 0:
            raise must("animation_seconds", "a number of seconds > 0", self.animation_seconds)
        if self.preview_every_s is not None and not self.preview_every_s > 0:
            raise must("preview_every_s", "a number of seconds > 0 or null (no preview)",
                       self.preview_every_s)
        if self.show_path not in SHOW_PATH:
            raise must("show_path", f"one of {SHOW_PATH}", self.show_path)
        for name, settings in self.options.items():
            entry = OUTPUT_FORMATS[name] if name in OUTPUT_FORMATS else None
            if not isinstance(entry, OutputFormat) or not isinstance(settings, entry.settings):
                raise must(f"options.{name}", "the settings of an output format that has settings "
                           "of its own", settings, "Remove it, or name such a format.")

    def settings_of(self, name: str):
        """The settings of output format ``name`` (an :class:`OutputFormat`): as configured, else
        its defaults."""
        return self.options.get(name) or OUTPUT_FORMATS[name].settings()

    @property
    def all_formats(self) -> tuple[str, ...]:
        """The output formats to write: ``formats``, or ``format`` alone."""
        return tuple(dict.fromkeys(self.formats)) or (self.format,)
