"""Training with a recorded path, as configured: the training settings (and several runs of
them) and the learning-rate schedule; each a frozen dataclass checking its own fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .rules import SettingError, check_finite, check_seeds, is_int, must

RECORD_UNITS = ("epoch", "step")
TRAIN_RUN_KEYS = ("epochs", "batch_size", "optimizer", "learning_rate", "record_every",
                  "record_unit", "seed", "record_optimizer_state")
SCHEDULE_KINDS = ("exponential", "step", "cosine")


@dataclass(frozen=True)
class ScheduleConfig:
    """A learning-rate schedule over optimiser steps, starting from ``train.learning_rate``
    (``lr``) at step 0: ``exponential`` ``lr * decay_rate ** (step / decay_steps)``; ``step`` the
    same with ``floor(step / decay_steps)`` (the rate drops every ``decay_steps`` steps);
    ``cosine`` from ``lr`` down to ``alpha * lr`` over ``decay_steps`` steps, then held."""

    kind: str = "exponential"
    decay_steps: int = 100
    decay_rate: float = 0.5  # exponential and step
    alpha: float = 0.0  # cosine: the last rate, as a fraction of the first

    def __post_init__(self):
        check_finite(self)
        if self.kind not in SCHEDULE_KINDS:
            raise must("kind", f"one of {SCHEDULE_KINDS}", self.kind)
        if not is_int(self.decay_steps) or self.decay_steps < 1:
            raise must("decay_steps", "an integer >= 1 (optimiser steps)", self.decay_steps)
        if not self.decay_rate > 0:
            raise must("decay_rate", "a number > 0 (the factor per decay_steps steps)",
                       self.decay_rate)
        if not 0 <= self.alpha <= 1:
            raise must("alpha", "a number from 0 to 1 (a fraction of the first rate)", self.alpha)


@dataclass(frozen=True)
class TrainConfig:
    """Training with a recorded path. ``learning_rate_schedule`` (optional) makes the rate a
    schedule starting at ``learning_rate``; each run of ``runs`` uses it from its own rate.
    ``record_optimizer_state``: also record an adaptive optimiser's second moments."""

    epochs: int = 100
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    learning_rate_schedule: ScheduleConfig | None = None
    record_every: int = 1
    record_unit: str = "epoch"
    record_optimizer_state: bool = False
    seed: int = 0
    runs: tuple[dict[str, Any], ...] = ()  # several runs, each these settings with its overrides

    def __post_init__(self):
        check_finite(self)
        check_seeds(self)
        for i, run in enumerate(self.runs):
            unknown = [k for k in run if k not in TRAIN_RUN_KEYS]
            if unknown:
                raise must(f"runs.{i}", f"a mapping of training settings ({', '.join(TRAIN_RUN_KEYS)})",
                           dict(run))
            try:
                dataclasses.replace(self, runs=(), **run)  # each run's settings are checked too
            except SettingError as err:
                raise err.under(f"runs.{i}") from None
        for key in ("epochs", "batch_size", "record_every"):
            value = getattr(self, key)
            if not is_int(value) or value < 1:
                raise must(key, "an integer >= 1", value)
        if not self.learning_rate > 0:
            raise must("learning_rate", "a number > 0", self.learning_rate)
        if self.record_unit not in RECORD_UNITS:
            raise must("record_unit", f"one of {RECORD_UNITS}", self.record_unit)
        if not isinstance(self.record_optimizer_state, bool):  # a run's override is not typed
            raise must("record_optimizer_state", "true or false", self.record_optimizer_state)

    @property
    def run_settings(self) -> list["TrainConfig"]:
        """The settings of each run: this one alone, or one per entry of ``runs``."""
        return [dataclasses.replace(self, runs=(), **run) for run in self.runs] or [self]
