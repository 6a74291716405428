"""When and how an evaluator's strategy is chosen: from the tuning cache, from an identical
worker's measurement, or by timing the candidates (:class:`~.tuning.StrategyTuner`).

Order, on each job of plane coordinates until the choice is made: a choice stored for the same
key (model, data, settings, plane, device, threads, versions) is used at once, from the first job;
without one, strict vectorisation is not tried where it is stored or known to fail (the model's
layer and metric types); a worker that follows another waits for that worker's choice
(:meth:`StrategyChooser.adopt`); otherwise the first ``untimed`` jobs are evaluated as they
come (the first results do not wait for the timings), then the tuner times the candidates within
its budget on the next job large enough, and the choice is stored. A stored choice that skipped candidates for its budget is used
at once and its tuning resumed: those candidates are timed (within this sweep's budget) beside it.
"""

from __future__ import annotations

import logging

from .strategy import Strategy
from .tuning import StrategyTuner
from .tuning_cache import TuningCache

log = logging.getLogger(__name__)

SOURCES = ("timed", "cache", "shared")


class StrategyChooser:
    """Chooses an evaluator's strategy (see the module's description).

    ``tuner``: times the candidates; ``cache``: where choices are kept (None: nowhere);
    ``untimed``: jobs evaluated as they come before the timings. State: ``source`` (how the
    strategy in use was chosen: one of :data:`SOURCES`, None before), ``settled`` (nothing is
    left to do: chosen, or the strategy in use kept because timing could not pay),
    ``following`` (waiting for another worker's choice), ``jobs_left`` (jobs of the sweep still
    to come, where known), ``first_job`` ((seconds, points) of the first job).
    """

    def __init__(self, tuner: StrategyTuner, cache: TuningCache | None = None, untimed: int = 0):
        self.tuner, self.cache = tuner, cache
        self._untimed = int(untimed)
        self.source: str | None = None
        self.settled = False
        self.following = False
        self.jobs_left: int | None = None
        self.first_job: tuple[float, int] | None = None
        self._looked_up = False
        self._failure_kept = False
        self._resume: set[str] | None = None  # labels still to time after a stored choice
        self._report: dict = {}

    @property
    def pending(self) -> bool:
        """Whether the choice is still to come."""
        return not self.settled

    def before_job(self, evaluator, items) -> None:
        """Choose, where due, before a job of ``items`` plane coordinates (P, k) is evaluated."""
        if self.settled:
            return
        if not self._looked_up:
            self._looked_up = True  # once: a plane of the same shapes keeps the key
            stored = self.cache.read(evaluator.tuning_key()) if self.cache is not None else None
            if stored is not None and "strategy" in stored:
                self._use(evaluator, stored, "cache")
                # candidates the stored run skipped for its budget: this run may time them
                self._resume = set(stored["report"].get("skipped") or ()) or None
                self.settled = self._resume is None
                self._untimed = max(0, self._untimed - 1)  # this job is evaluated at once
                return
            if stored is not None:  # no choice, but strict vectorisation is known to fail
                evaluator.skip_strict_vectorization(stored["vectorize_failure"])
                self._failure_kept = True
            else:
                # nothing stored: a first job does not pay for an attempt known to fail (its
                # trace cost 0.2-2 s); the tuner still times the vectorised method with
                # fallback loops
                known = evaluator.known_vectorize_failure()
                if known is not None:
                    evaluator.skip_strict_vectorization(known)
        if self.following:
            return
        if self._untimed > 0:  # the first results come without waiting for the timings
            self._untimed -= 1
            return
        sweep_points = None if self.jobs_left is None else max(1, self.jobs_left) * len(items)
        before = evaluator.strategy if self._resume else None
        chosen = self.tuner.choose(evaluator, items, sweep_points, self.first_job, self._resume)
        if chosen is not None:
            report = self.tuner.report()
            if self._resume:  # the stored timings and this run's
                report["us_per_point"] = {**self._report.get("us_per_point", {}),
                                          **report["us_per_point"]}
            self._use(evaluator, {"strategy": chosen, "points_per_call": self.tuner.points_per_call_,
                                  "report": report}, "cache" if chosen == before else "timed")
            # stored with the candidates skipped for the budget: a later, longer sweep that
            # reads it times those
            if self.cache is not None:
                self.cache.write(evaluator.tuning_key(), chosen, self.tuner.points_per_call_,
                                 report)
        elif self.tuner.settled_:
            self.settled = True
            log.debug("evaluation strategy kept: timing cannot pay on %s more points",
                      sweep_points)

    def after_job(self, evaluator, seconds: float, points: int) -> None:
        """Count a job of plane coordinates done (``seconds`` for ``points``); keep in the
        cache that strict vectorisation failed, where it did and nothing is stored yet."""
        if self.first_job is None:
            self.first_job = (float(seconds), int(points))
        if (self.cache is not None and evaluator.vectorize_failure is not None
                and not self._failure_kept and self.source is None):
            self._failure_kept = True
            self.cache.write_failure(evaluator.tuning_key(), evaluator.vectorize_failure)
        if self.jobs_left is not None:
            self.jobs_left = max(0, self.jobs_left - 1)

    def _use(self, evaluator, entry: dict, source: str) -> None:
        evaluator.force_strategy(entry["strategy"])
        evaluator.points_per_call = int(entry["points_per_call"])
        self.source, self.settled, self._report = source, True, dict(entry.get("report", {}))
        log.debug("evaluation strategy (%s): %s", source, evaluator.choice)

    def adopt(self, evaluator, entry: dict | None) -> None:
        """Use another worker's choice (``entry`` as :meth:`shared` gives it); None: that
        worker kept its strategy, this one keeps its own without timing."""
        if entry is None:
            self.settled = True
            return
        strategy = entry["strategy"]
        if not isinstance(strategy, Strategy):
            strategy = Strategy(**strategy)
        self._use(evaluator, {**entry, "strategy": strategy}, "shared")

    def shared(self, evaluator) -> dict | None:
        """The choice to hand to identical workers: the strategy as forced, the points per call
        and the timings; None where the strategy in use was kept without a choice."""
        if self.source is None:
            return None
        return {"strategy": evaluator.strategy, "points_per_call": evaluator.points_per_call,
                "report": self._report}

    def report(self) -> dict:
        """``tuned`` (a chosen strategy is in use), ``chosen_by`` (its source) and the timings
        it was chosen by."""
        if self.source is None:
            return {"tuned": False}
        return {"tuned": True, "chosen_by": self.source, **self._report}
