"""How an evaluator's strategy is set: forced, timed, read from the tuning cache or shared by an
identical evaluator, and what a choice reports and is keyed by.

:class:`StrategyControl` is a base of :class:`~landscape_dist.model.evaluator.LandscapeEvaluator`;
it holds no state of its own but reads the evaluator's: ``_strategy`` (the strategy in use),
``_tuner`` and ``_chooser`` (None where ``tune`` is off), ``shortcut`` and ``folding`` (None
where they do not apply), ``model``, ``mode``, ``vectorize_failure``, ``points_per_call`` and what
:meth:`StrategyControl.tuning_key` lists.
"""

from __future__ import annotations

from dataclasses import replace

import tensorflow as tf

from .checks import compile_metrics
from .strategy import (Strategy, intra_op_threads, known_vectorization_failure,
                       unavailable_reason)
from .tuning_cache import model_description


class StrategyControl:
    """The strategy of a :class:`~landscape_dist.model.evaluator.LandscapeEvaluator`: what is in
    use, what takes effect, how it was chosen and with which other evaluators."""

    # ---------------------------------------------------------------- strategies

    @property
    def strategy(self) -> Strategy:
        """The strategy as forced or chosen; its shortcut and fold take effect only where they
        apply (:attr:`choice` reports what does)."""
        return self._strategy

    @property
    def method(self) -> str:
        """``vectorized`` or ``loop``: how the points of a call are evaluated."""
        return self._strategy.method

    def force_strategy(self, strategy: Strategy) -> "StrategyControl":
        """Evaluate by ``strategy`` from now on (see :class:`Strategy`)."""
        if not isinstance(strategy, Strategy):
            raise TypeError(f"The 'strategy' parameter must be a Strategy. Got {strategy!r} "
                            f"instead.")
        self._strategy = strategy
        return self

    @property
    def effective_strategy(self) -> Strategy:
        """:attr:`strategy` as it takes effect: the shortcut and the fold only where they apply."""
        s = self._strategy
        return replace(s, shortcut=s.shortcut and self.shortcut is not None,
                       fold=s.fold and self.folding is not None)

    def note_vectorize_failure(self, err: BaseException) -> None:
        """Remember why strict vectorisation failed (the tuner then offers the vectorised method
        with ``pfor``'s fallback loops instead)."""
        if self.vectorize_failure is None:
            self.vectorize_failure = unavailable_reason(err)

    def skip_strict_vectorization(self, reason: str) -> None:
        """Start with the compiled loop (mode ``auto``): strict vectorisation is known to fail
        for ``reason`` (a stored fact), so it is not tried again."""
        if self.mode == "auto" and self.vectorize_failure is None:
            self.vectorize_failure = reason
            if self._strategy.method == "vectorized" and not self._strategy.fallback:
                self._strategy = replace(self._strategy, method="loop")

    def known_vectorize_failure(self) -> str | None:
        """Why strict vectorisation is known to fail here without trying it (see
        :func:`~.strategy.known_vectorization_failure`), for the strategy in effect; None where
        nothing is known."""
        metrics = compile_metrics(self.model)
        skip = self.model.layers[:1] if self.effective_strategy.shortcut else ()
        return known_vectorization_failure(self.model, metrics.metrics if metrics else (), skip)

    @property
    def timed_strategies(self) -> tuple[Strategy, ...]:
        """The strategies the tuner timed (none before it has chosen)."""
        return tuple(self._tuner.timings_) if self._tuner is not None else ()

    @property
    def choice(self) -> dict:
        """The strategy in use (method, fallback loops, shortcut, fold, xla, parallel parts,
        points per call) and, where it was chosen (``tune``): how (``chosen_by``: timed here,
        read from the tuning cache or shared by an identical worker), the candidates'
        microseconds per point (``us_per_point``, by :attr:`Strategy.label`), those of the
        chosen one by points per call (``us_per_point_by_points_per_call``), the candidates
        not timed for the budget (``skipped``), the budget and the seconds the timing took."""
        s = self.effective_strategy
        chosen = self._chooser.report() if self._chooser is not None else {"tuned": False}
        return {"tuned": chosen.pop("tuned"), "method": s.method, "fallback": s.fallback,
                "shortcut": s.shortcut, "fold": s.fold, "xla": s.xla, "parallel": s.parallel,
                "points_per_call": self.points_per_call, **chosen}

    # ---------------------------------------------------------------- choosing with other workers

    def expect_jobs(self, jobs: int | None) -> None:
        """The sweep's jobs of plane coordinates still to come on this evaluator (None:
        unknown): the tuning then takes at most ``tune_share`` of their time."""
        if self._chooser is not None:
            self._chooser.jobs_left = None if jobs is None else int(jobs)

    def follow(self) -> None:
        """Do not time the strategies: an identical evaluator does, and :meth:`adopt` hands
        its choice here (a stored choice is still used)."""
        if self._chooser is not None:
            self._chooser.following = True

    def adopt(self, entry: dict | None) -> None:
        """Use an identical evaluator's choice (:attr:`shared_choice`); None: it kept its
        strategy without a choice, and so does this one."""
        if self._chooser is not None:
            self._chooser.adopt(self, entry)

    @property
    def choosing(self) -> bool:
        """Whether this evaluator's strategy is still to be chosen (``tune`` on, no choice
        made, timed, read or adopted yet)."""
        return self._chooser is not None and self._chooser.pending

    @property
    def shared_choice(self) -> dict | None:
        """This evaluator's choice for identical ones (strategy, points per call, timings), or
        None where it kept its strategy without one."""
        return self._chooser.shared(self) if self._chooser is not None else None

    def tuning_key(self) -> dict:
        """What the strategies' timings depend on, as the tuning cache keys a choice: the
        model, the data's shapes, the settings, the plane's shape and what applies on it, the
        device kind, the threads and the versions."""
        import keras

        from .. import __version__
        from .runtime import device_kind

        xb, yb = self._batches[0]
        return {"model": model_description(self.model), "policy": self.dtype_policy,
                "x": [list(xb.shape), xb.dtype.name, self.n_examples],
                "y": [[list(t.shape), t.dtype.name] for t in tf.nest.flatten(yb)],
                "population": self._population, "mode": self.mode, "batch": self.batch_size,
                "budget_points": self._budget_points,
                "k": None if self._directions is None else int(self._directions.shape[0]),
                "shortcut": self.shortcut is not None, "fold": self.folding is not None,
                "recompute": self.recompute, "moving": self.statistics_move,
                "parts": [p.name for p in self.quantities.parts], "device": device_kind(),
                "threads": intra_op_threads(),
                "versions": [tf.__version__, keras.__version__, __version__]}
