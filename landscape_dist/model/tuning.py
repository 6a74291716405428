"""Choosing an evaluator's strategy by timing the candidates on the points of one job.

The strategy in use is timed first. First round: vectorised or looped over points (both in
``mode: auto``; vectorised strictly, or with ``pfor``'s fallback loops where strict vectorisation
fails), each plain, with the first-layer shortcut and with batch norms folded (each where it
applies). Second round: the best of those as a loop in blocks compiled by XLA, and in blocks run
one per thread with single-threaded ops (with and without XLA) where this process has several
threads, as far as the model's precision allows. Last: other points per call for the fastest.
Each candidate is compiled on one call, then timed twice on the same points and the better pass
kept (once where the first pass is far slower than the best so far).

Tuning is bounded by what the sweep stands to gain (:func:`tuning_budget`): given the points the
sweep still holds, the candidates are timed within a share of the sweep's time at the current
strategy's speed, and a candidate whose estimated cost (compilation and timing) does not fit in
what is left is not timed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace

import tensorflow as tf

from .checks import dtype_policies
from .strategy import UNAVAILABLE, Strategy, intra_op_threads, quiet_tensorflow, unavailable_reason

log = logging.getLogger(__name__)

MAX_LOOP_POINTS_PER_CALL = 4096  # a loop's calls: their inputs are coordinates, a few per point
_LARGER_CALL_S = 0.25  # calls larger than the budget's are tried only where they are this quick
_XLA_COMPILE = 2.0  # XLA compiles a model about this many times as long as the default graph
_TIMED_PASSES = 3  # a candidate's timing runs its sample about this many times (warm-up included)
_GIVE_UP = 1.5  # a first pass this many times slower than the best so far is not repeated
_LONG_PASS_S = 1.0  # ... nor one this long (a long pass is disturbed less, relatively)


def first_round(mode: str, method: str, shortcut_applies: bool, fold_applies: bool,
                fallback: bool = False) -> list[Strategy]:
    """The first candidates: each method ``mode`` allows (both for ``auto``, else ``method``),
    plain, with the shortcut and with batch norms folded where they apply; the vectorised ones
    with ``pfor``'s fallback loops where ``fallback`` (``auto`` only: strict vectorisation
    failed)."""
    methods = ("vectorized", "loop") if mode == "auto" else (method,)
    variants = (([(True, False)] if shortcut_applies else []) + [(False, False)]
                + ([(False, True)] if fold_applies else []))
    loops = fallback and mode == "auto"
    return [Strategy(m, shortcut, fold, fallback=loops and m == "vectorized")
            for m in methods for shortcut, fold in variants]


def second_round(best: Strategy, policies: list[str], threads: int) -> list[Strategy]:
    """The first round's ``best`` again as a loop in XLA blocks and in ``threads`` parallel
    blocks. XLA and single-threaded kernels round mixed precision differently (up to 1e-2 for
    bfloat16), and XLA a float64 model to float32's precision: offered only where they agree
    with the default to float32 rounding (XLA for float32 models, parallel blocks for float32
    and float64 ones)."""
    if policies not in (["float32"], ["float64"]):
        return []
    second = [(True, 1)] if policies == ["float32"] else []  # (xla, parallel)
    if threads > 1:
        second += [(False, threads)] + ([(True, threads)] if second else [])
    return [Strategy("loop", best.shortcut, best.fold, xla, parallel) for xla, parallel in second]


def call_sizes(best: Strategy, budget_points: int, job_points: int,
               seconds_per_point: float) -> list[int]:
    """Points per call to time for the chosen strategy besides the budget's: a quarter and a
    sixteenth of it (at least 8); for a loop also twice and four times it, where the job has the
    points and a call stays short: a loop holds a few points' activations at a time, whatever
    the call's size (the budget is for the vectorised method), and larger calls pay where the
    per-call overhead is what remains."""
    sizes = [s for s in (budget_points // 4, budget_points // 16) if s >= 8]
    if best.method == "loop":
        sizes += [s for s in (2 * budget_points, 4 * budget_points)
                  if s <= min(job_points, MAX_LOOP_POINTS_PER_CALL)
                  and seconds_per_point * s <= _LARGER_CALL_S]
    return sizes


def seconds_per_point(evaluator, points, size: int, clock=time.perf_counter) -> float:
    """Seconds per point of the evaluator's strategy over ``points``, ``size`` per call."""
    t0 = clock()
    for start in range(0, len(points), size):
        evaluator.compiled_call(points[start:start + size])
    return (clock() - t0) / len(points)


def worth_tuning(share: float | None, sweep_points: int | None, sample_points: int) -> bool:
    """Whether timing anything can pay: without a bound (``share`` or ``sweep_points`` None),
    always; else where the share of the sweep's remaining points holds a candidate's passes
    over the sample (``_TIMED_PASSES`` of them) at the current strategy's speed."""
    if share is None or sweep_points is None:
        return True
    return share * sweep_points >= _TIMED_PASSES * sample_points


def tuning_budget(share: float | None, sweep_points: int | None, per_point_s: float) -> float:
    """Seconds the tuning may take: ``share`` of the sweep's remaining ``sweep_points`` at
    ``per_point_s`` (the current strategy's speed); infinite without a bound."""
    if share is None or sweep_points is None:
        return math.inf
    return share * sweep_points * per_point_s


def compile_estimate(first_job: tuple[float, int] | None, per_point_s: float) -> float:
    """Seconds a candidate takes to compile, estimated from the first job (``(seconds,
    points)``, compiled then evaluated by the default strategy) and the default's steady speed."""
    if first_job is None:
        return 0.0
    seconds, points = first_job
    return max(0.0, seconds - points * per_point_s)


def candidate_cost(strategy: Strategy, compile_s: float, sample_points: int,
                   per_point_s: float) -> float:
    """Estimated seconds to time ``strategy`` on ``sample_points``: its compilation (longer for
    XLA) and its passes at about the current strategy's speed."""
    return (compile_s * (_XLA_COMPILE if strategy.xla else 1.0)
            + _TIMED_PASSES * sample_points * per_point_s)


class StrategyTuner:
    """Times strategies on an evaluator and chooses the fastest (see the module's description).

    ``choose(evaluator, items, sweep_points, first_job)`` returns the chosen :class:`Strategy`,
    or None where the job is too small to time (fewer than ``min_points``, 8 where the memory
    budget allows at most 4 points per call), no candidate runs or timing cannot pay (then
    ``settled_`` is True: the strategy in use is kept). ``share``: the share of the sweep's
    remaining time the tuning may take (None: no bound); ``clock``: seconds, for tests.
    Learned: ``strategy_`` (None until chosen), ``timings_`` (Strategy -> seconds per point),
    ``calls_`` (points per call -> seconds per point for the chosen strategy),
    ``points_per_call_`` (the fastest of those), ``skipped_`` (strategies not timed: their cost
    did not fit in the budget), ``budget_s_`` and ``spent_s_``.
    """

    def __init__(self, min_points: int = 64, share: float | None = None,
                 clock=time.perf_counter):
        self.min_points = min_points
        self.share = share
        self.clock = clock
        self.strategy_: Strategy | None = None
        self.timings_: dict[Strategy, float] = {}
        self.calls_: dict[int, float] = {}
        self.points_per_call_: int | None = None
        self.skipped_: list[Strategy] = []
        self.settled_ = False
        self.budget_s_: float | None = None
        self.spent_s_ = 0.0
        self._no_fallback = False
        self._only: set[str] | None = None

    def choose(self, evaluator, items, sweep_points: int | None = None,
               first_job: tuple[float, int] | None = None,
               only: set[str] | None = None) -> Strategy | None:
        """Time the candidates on ``items`` (plane coordinates (P, k)), each forced on
        ``evaluator`` in turn; the evaluator's strategy is as before afterwards.
        ``sweep_points``: the points still to evaluate, these included (None: unknown, no
        bound); ``first_job``: seconds and points of the evaluator's first job; ``only``: the
        labels of the candidates to time besides the strategy in use (None: every one; a
        stored choice's skipped candidates, where a later sweep resumes its tuning)."""
        self._only = only
        # a model whose memory budget fits only a few points per call is costly per point: a
        # few points time it well enough
        least = 8 if evaluator.points_per_call <= 4 else self.min_points
        if len(items) < least:
            return None
        budget_points = evaluator.points_per_call
        sample = tf.constant(items[:min(len(items), max(budget_points, least))])
        if not worth_tuning(self.share, sweep_points, len(sample)):
            self.settled_ = True
            return None
        default = evaluator.strategy
        start = self.clock()
        self.budget_s_ = math.inf
        try:
            timings = self._time_candidates(evaluator, sample, budget_points, sweep_points,
                                            first_job, start)
            if not timings:
                self.settled_ = True
                return None
            best = min(timings, key=timings.get)
            evaluator.force_strategy(best)
            calls = {budget_points: timings[best]}
            for size in call_sizes(best, budget_points, len(items), timings[best]):
                # the same function takes any number of points; new shapes warm up first
                points = sample if size <= len(sample) else tf.constant(items[:size])
                if self._spent(start) + 2 * len(points) * timings[best] > self.budget_s_:
                    continue
                seconds_per_point(evaluator, points, size, self.clock)
                calls[size] = seconds_per_point(evaluator, points, size, self.clock)
        finally:
            evaluator.force_strategy(default)
            self.spent_s_ = self._spent(start)
        self.strategy_, self.timings_, self.calls_ = best, timings, calls
        self.points_per_call_ = min(calls, key=calls.get)
        return best

    def _spent(self, start: float) -> float:
        return self.clock() - start

    def _time_candidates(self, evaluator, sample, size: int, sweep_points, first_job,
                         start: float) -> dict[Strategy, float]:
        """Seconds per point of each candidate that runs and fits in the budget, over
        ``sample``, ``size`` per call; the strategy in use first (it sets the budget)."""
        timings: dict[Strategy, float] = {}
        current = evaluator.effective_strategy
        # compiled (and its shapes warmed up) by the jobs evaluated before, where there were any
        self._time(evaluator, current, sample, size, timings, compiled=first_job is not None)
        if not timings:
            return timings
        # (where the strategy in use fails to run as timed, e.g. strictly vectorised, the
        # fallback it was retried as sets the budget)
        per_point = timings.get(current, min(timings.values()))
        self.budget_s_ = tuning_budget(self.share, sweep_points, per_point)
        compile_s = compile_estimate(first_job, per_point)

        def fits(strategy: Strategy) -> bool:
            if self._only is not None and strategy.label not in self._only:
                return False
            cost = candidate_cost(strategy, compile_s, len(sample), per_point)
            if self._spent(start) + cost <= self.budget_s_:
                return True
            self.skipped_.append(strategy)
            return False

        first = first_round(evaluator.mode, evaluator.strategy.method,
                            evaluator.shortcut is not None, evaluator.folding is not None,
                            fallback=evaluator.vectorize_failure is not None)
        for strategy in first:
            if strategy != current and fits(strategy):
                self._time(evaluator, strategy, sample, size, timings)
        if any(s.method == "loop" for s in first):
            # a tf.data map runs on the host: parallel blocks are for models evaluated on CPUs
            on_gpu = bool(tf.config.list_logical_devices("GPU"))
            threads = 1 if on_gpu else min(intra_op_threads(), len(sample))
            best = min(timings, key=timings.get)
            for strategy in second_round(best, dtype_policies(evaluator.model), threads):
                if strategy not in timings and fits(strategy):
                    self._time(evaluator, strategy, sample, size, timings)
        return timings

    def _time(self, evaluator, strategy: Strategy, sample, size: int, timings: dict,
              compiled: bool = False) -> None:
        """Time ``strategy`` into ``timings``: compiled on one call first (unless
        ``compiled``), then the better of two passes (one short pass is easily disturbed on a
        shared machine; the second is skipped where the first is long or far slower than the
        best so far); nothing where it fails to run. A strict vectorisation that fails is tried
        again with ``pfor``'s fallback loops."""
        if strategy.fallback and self._no_fallback:
            return
        evaluator.force_strategy(strategy)
        try:
            with quiet_tensorflow():
                if not compiled:
                    evaluator.compiled_call(sample[:size])  # compiles
                seconds = seconds_per_point(evaluator, sample, size, self.clock)
                best = min(timings.values(), default=math.inf)
                if seconds <= _GIVE_UP * best and seconds * len(sample) < _LONG_PASS_S:
                    seconds = min(seconds, seconds_per_point(evaluator, sample, size, self.clock))
                timings[strategy] = seconds
        except UNAVAILABLE as err:
            # e.g. ops without a vectorised form, or without an XLA kernel
            if strategy.method != "vectorized" or evaluator.mode != "auto" or self._no_fallback:
                return
            if not strategy.fallback:
                evaluator.note_vectorize_failure(err)
                self._time(evaluator, replace(strategy, fallback=True), sample, size, timings)
            else:  # vectorisation fails outright: not offered again, said once
                self._no_fallback = True
                log.info("vectorised evaluation unavailable even with fallback loops (%s); not "
                         "offered", unavailable_reason(err))

    def report(self) -> dict:
        """Microseconds per point of each strategy timed (by label) and, for the chosen one, of
        each number of points per call timed; the strategies not timed for the budget
        (``skipped``), the budget and the seconds spent; empty before a choice."""
        if self.strategy_ is None:
            return {}
        budget = None if self.budget_s_ is None or math.isinf(self.budget_s_) else round(
            self.budget_s_, 3)
        return {"us_per_point": {s.label: round(t * 1e6, 2) for s, t in self.timings_.items()},
                "us_per_point_by_points_per_call": {str(k): round(v * 1e6, 2)
                                                    for k, v in self.calls_.items()},
                "skipped": [s.label for s in self.skipped_],
                "tuning_budget_s": budget, "tuning_s": round(self.spent_s_, 3)}
