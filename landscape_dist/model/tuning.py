"""Choosing an evaluator's strategy by timing the candidates on the points of its first job.

First round: vectorised or looped over points (both in ``mode: auto``), each plain, with the
first-layer shortcut and with batch norms folded (each where it applies). Second round: the best
of those as a loop in blocks compiled by XLA, and in blocks run one per thread with
single-threaded ops (with and without XLA) where this process has several threads, as far as the
model's precision allows. Last: other points per call for the fastest. Each candidate is compiled
first, then timed twice on the same points and the better pass kept.
"""

from __future__ import annotations

import time

import tensorflow as tf

from .checks import dtype_policies
from .strategy import UNAVAILABLE, Strategy, intra_op_threads, quiet_tensorflow

MAX_LOOP_POINTS_PER_CALL = 4096  # a loop's calls: their inputs are coordinates, a few per point
_LARGER_CALL_S = 0.25  # calls larger than the budget's are tried only where they are this quick


def first_round(mode: str, method: str, shortcut_applies: bool, fold_applies: bool) -> list[Strategy]:
    """The first candidates: each method ``mode`` allows (both for ``auto``, else ``method``),
    plain, with the shortcut and with batch norms folded where they apply."""
    methods = ("vectorized", "loop") if mode == "auto" else (method,)
    variants = (([(True, False)] if shortcut_applies else []) + [(False, False)]
                + ([(False, True)] if fold_applies else []))
    return [Strategy(m, shortcut, fold) for m in methods for shortcut, fold in variants]


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


def seconds_per_point(evaluator, points, size: int) -> float:
    """Seconds per point of the evaluator's strategy over ``points``, ``size`` per call."""
    t0 = time.perf_counter()
    for start in range(0, len(points), size):
        evaluator.compiled_call(points[start:start + size])
    return (time.perf_counter() - t0) / len(points)


class StrategyTuner:
    """Times strategies on an evaluator and chooses the fastest (see the module's description).

    ``choose(evaluator, items)`` returns the chosen :class:`Strategy`, or None where the job is
    too small to time (fewer than ``min_points``, 8 where the memory budget allows at most 4
    points per call) or no candidate runs. Learned: ``strategy_`` (None until chosen),
    ``timings_`` (Strategy -> seconds per point), ``calls_`` (points per call -> seconds per
    point for the chosen strategy) and ``points_per_call_`` (the fastest of those).
    """

    def __init__(self, min_points: int = 64):
        self.min_points = min_points
        self.strategy_: Strategy | None = None
        self.timings_: dict[Strategy, float] = {}
        self.calls_: dict[int, float] = {}
        self.points_per_call_: int | None = None

    def choose(self, evaluator, items) -> Strategy | None:
        """Time the candidates on ``items`` (plane coordinates (P, k)), each forced on
        ``evaluator`` in turn; the evaluator's strategy is as before afterwards."""
        # a model whose memory budget fits only a few points per call is costly per point: a
        # few points time it well enough
        least = 8 if evaluator.points_per_call <= 4 else self.min_points
        if len(items) < least:
            return None
        budget_points = evaluator.points_per_call
        sample = tf.constant(items[:min(len(items), max(budget_points, least))])
        default = evaluator.strategy
        try:
            timings = self._time_candidates(evaluator, sample, budget_points)
            if not timings:
                return None
            best = min(timings, key=timings.get)
            evaluator.force_strategy(best)
            calls = {budget_points: timings[best]}
            for size in call_sizes(best, budget_points, len(items), timings[best]):
                # the same function takes any number of points; new shapes warm up first
                points = sample if size <= len(sample) else tf.constant(items[:size])
                seconds_per_point(evaluator, points, size)
                calls[size] = seconds_per_point(evaluator, points, size)
        finally:
            evaluator.force_strategy(default)
        self.strategy_, self.timings_, self.calls_ = best, timings, calls
        self.points_per_call_ = min(calls, key=calls.get)
        return best

    def _time_candidates(self, evaluator, sample, size: int) -> dict[Strategy, float]:
        """Seconds per point of each candidate that runs, over ``sample``, ``size`` per call."""
        timings: dict[Strategy, float] = {}
        first = first_round(evaluator.mode, evaluator.strategy.method,
                            evaluator.shortcut is not None, evaluator.folding is not None)
        for strategy in first:
            self._time(evaluator, strategy, sample, size, timings)
        if timings and any(s.method == "loop" for s in first):
            # a tf.data map runs on the host: parallel blocks are for models evaluated on CPUs
            on_gpu = bool(tf.config.list_logical_devices("GPU"))
            threads = 1 if on_gpu else min(intra_op_threads(), len(sample))
            best = min(timings, key=timings.get)
            for strategy in second_round(best, dtype_policies(evaluator.model), threads):
                self._time(evaluator, strategy, sample, size, timings)
        return timings

    @staticmethod
    def _time(evaluator, strategy: Strategy, sample, size: int, timings: dict) -> None:
        """Time ``strategy`` into ``timings``: compiled first, then the better of two passes
        (one pass is easily disturbed on a shared machine); nothing where it fails to run."""
        evaluator.force_strategy(strategy)
        try:
            with quiet_tensorflow():
                seconds_per_point(evaluator, sample, size)  # compiles, and warms the shapes up
                timings[strategy] = min(seconds_per_point(evaluator, sample, size),
                                        seconds_per_point(evaluator, sample, size))
        except UNAVAILABLE:
            pass  # e.g. ops without a vectorised form, or without an XLA kernel

    def report(self) -> dict:
        """Microseconds per point of each strategy timed (by label) and, for the chosen one, of
        each number of points per call timed; empty before a choice."""
        if self.strategy_ is None:
            return {}
        return {"us_per_point": {s.label: round(t * 1e6, 2) for s, t in self.timings_.items()},
                "us_per_point_by_points_per_call": {str(k): round(v * 1e6, 2)
                                                    for k, v in self.calls_.items()}}
