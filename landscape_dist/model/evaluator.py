"""Loss and metrics of a compiled Keras model at many points of a plane, per compiled call.

The weights at a point, ``centre + a*d0 + b*d1``, are formed inside a ``tf.function`` and fed to
``model.stateless_call``, vectorised over points with ``tf.vectorized_map`` (or, where a model's ops
do not vectorise, a compiled ``tf.map_fn`` loop). Non-trainable state (batch-norm statistics) stays
at the centre and layers run in inference mode. The data stays on the device as constant batches.
How a call's points are evaluated is a :class:`~landscape_dist.model.strategy.Strategy`, forced
or chosen by timing (:mod:`landscape_dist.model.tuning`).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import tensorflow as tf

from ..core.layout import WeightLayout
from ..core.quantities import POINTS, WEIGHTS
from ..core.labels import arrange_labels, map_labels
from ..errors import SourceError
from .checks import DATA, activations_per_example, check_data, compile_metrics, output_names
from .folding import FoldedForward
from .loss import BatchLoss
from .shortcut import FirstLayerShortcut
from .statistics import PlaneStatistics
from .strategy import (UNAVAILABLE, Strategy, call_body, quiet_tensorflow,
                       unavailable_reason)
from .tuning import StrategyTuner

log = logging.getLogger(__name__)

_MAX_POINTS_PER_CALL = 1024
MODES = ("auto", "vectorized", "loop")


class LandscapeEvaluator:
    """Evaluates a compiled Keras model on fixed data at points of a plane through its weights.

    ``set_plane(centre, directions)`` fixes the plane; ``evaluate(coords)`` returns, for coords of
    shape (P, k), a dict of name -> (P,) float64 arrays: ``loss`` and every compiled metric.
    ``evaluate_weights(weights)`` does the same for full weight vectors (P, size). ``parts``
    returns the values before shards are combined, as :attr:`quantities` describes them.
    ``objective`` is the same loss as a differentiable function of the weights.

    ``mode``: ``auto`` tries strict vectorisation over points and falls back to a compiled loop;
    ``vectorized`` lets ``pfor`` loop over just the ops it cannot vectorise; ``loop`` always
    loops. :attr:`method` is what is in use (``vectorized`` or ``loop``). The points of a call
    may also go in fixed blocks, each compiled by XLA and/or run several at a time with
    single-threaded ops; batch norms may be folded into the layers before them: the whole
    :attr:`strategy`. ``tune`` times the strategies on the first job of plane coordinates after
    ``tune_after`` such jobs evaluated as they come (:meth:`force_strategy` forces one).
    """

    def __init__(self, model, x, y, *, batch_size: int | None = None,
                 memory_budget_mb: float = 256.0, mode: str = "auto", shortcut: bool = True,
                 tune: bool = False, tune_after: int = 0,
                 population: tuple[int, int] | None = None):
        if mode not in MODES:
            raise ValueError(f"The 'mode' parameter must be 'auto', 'vectorized' or 'loop'. "
                             f"Got {mode!r} instead.")
        self.model = model
        self.mode = mode
        self.output_names = output_names(model)
        x = np.asarray(x)
        try:
            y = arrange_labels(y, self.output_names)
        except ValueError as err:
            raise SourceError(f"The {{data}} {err}. Give one label array per output, keyed by "
                              f"output name.", DATA) from None
        self.n_examples = len(x)
        check_data(model, x, y)
        if not model.built or compile_metrics(model) is None or not model._compile_loss.built:
            # Builds the model, its loss and its metric containers on a couple of examples.
            model.evaluate(x[:2], map_labels(lambda a: a[:2], y), verbose=0)
        self.layout = WeightLayout.from_variables(model.trainable_variables)
        # weights, data and sums in the variables' dtype (float64 models stay float64; mixed
        # precision keeps float32 variables and computes in its own dtype inside the layers)
        self.dtype = tf.as_dtype(model.trainable_variables[0].dtype)
        self.dtype_policy = getattr(getattr(model, "dtype_policy", None), "name", str(self.dtype.name))
        # (n, N): x holds (a shard of) a random subset of n of the N examples; the standard
        # error of the data loss over the subset is then returned too (``loss_stderr``)
        self._population = tuple(int(v) for v in population) if population else None
        self._read_metrics()
        self._loss = BatchLoss(model, self.output_names, self.dtype)
        self.quantities = self._loss.quantities(self.metric_names, self._population)
        self.names = self.quantities.names
        self._size_batches(memory_budget_mb, batch_size)
        self._batches = [(tf.constant(x[i:i + self.batch_size]),
                          map_labels(lambda a: tf.constant(a[i:i + self.batch_size]), y))
                         for i in range(0, self.n_examples, self.batch_size)]
        self._init_plane_state(shortcut)
        # batch normalisations folded into the layers before them, where any can be
        self.folding = FoldedForward(model) if FoldedForward.applies(model) else None
        # the untuned default: the shortcut where it applies, nothing folded, no blocks
        self._strategy = Strategy("loop" if mode == "loop" else "vectorized", shortcut=True)
        self._tuner = StrategyTuner() if tune else None
        self._untimed = int(tune_after)  # jobs still to evaluate before the timings

    def _read_metrics(self) -> None:
        """The compiled metrics' container, its initial state and its result names."""
        self._metrics = compile_metrics(self.model)
        if self._metrics is not None:
            self._metrics.reset_state()
            self._metric_init = [v.numpy() for v in self._metrics.variables]
            self.metric_names = tuple(sorted(self._metrics.result().keys()))
        else:
            self._metric_init = []
            self.metric_names = ()

    def _init_plane_state(self, shortcut: bool) -> None:
        """No plane yet: the model's non-trainable values, no compiled functions."""
        self._statistics = PlaneStatistics(self.model)
        self._centre = None
        self._directions = None
        self._compiled = {}
        self._allow_shortcut = bool(shortcut)
        self.shortcut = None  # a FirstLayerShortcut once a plane is set, where one applies

    def _size_batches(self, memory_budget_mb: float, batch_size: int | None) -> None:
        """Examples per data batch and points per compiled call, from the memory budget."""
        budget = memory_budget_mb * 2 ** 20
        act_bytes = 12 * activations_per_example(self.model)  # activations and ~2 temporaries each
        if batch_size is None:
            batch_size = max(1, min(self.n_examples, int(budget // (2 * act_bytes))))
        self.batch_size = int(min(batch_size, self.n_examples))
        per_point = 8 * self.layout.size + act_bytes * self.batch_size
        self.points_per_call = int(max(1, min(_MAX_POINTS_PER_CALL, budget // per_point)))
        self._budget_points = self.points_per_call
        self._budget = budget

    @property
    def memory_budget_bytes(self) -> float:
        """The memory budget of a compiled call, in bytes (``memory_budget_mb`` given)."""
        return self._budget

    @property
    def budget_points(self) -> int:
        """Points per call the memory budget allows where every point of a call is held at once
        (the vectorised method, weight vectors as inputs); a loop's calls may be larger."""
        return self._budget_points

    # ---------------------------------------------------------------- the plane

    def set_plane(self, centre, directions, non_trainable=None, non_trainable_directions=None,
                  recompute: int | None = None) -> "LandscapeEvaluator":
        """Fix the plane: centre (size,), directions (k, size); non-trainable values (batch-norm
        statistics) at the centre, and optionally their directions (k lists, one array per
        non-trainable variable): then a point at coordinates c uses ``nt + sum_j c_j nt_dir_j``
        (statistics that move with the weights), else the centre's at every point.
        ``recompute``: re-estimate the batch-norm statistics at every point on the first
        ``recompute`` examples (one pass in training mode, dropout off), then evaluate."""
        centre = np.asarray(centre, dtype=self.dtype.as_numpy_dtype)
        directions = np.atleast_2d(np.asarray(directions, dtype=self.dtype.as_numpy_dtype))
        if centre.shape != (self.layout.size,) or directions.shape[1:] != (self.layout.size,):
            raise ValueError(f"The plane does not fit the model: the model has {self.layout.size} "
                             f"trainable weights, the centre has shape {centre.shape} and the "
                             f"directions {directions.shape}.")
        if self._statistics.set_recompute(recompute, [xb for xb, _ in self._batches]):
            self._compiled = {}
        # held in variables: a new plane of the same shapes keeps the compiled functions
        if self._statistics.hold(non_trainable, non_trainable_directions):
            self._compiled = {}
        if self._directions is None or tuple(self._directions.shape) != directions.shape:
            self._centre = tf.Variable(centre, trainable=False)
            self._directions = tf.Variable(directions, trainable=False)
            self._forget(POINTS)
        else:
            self._centre.assign(centre)
            self._directions.assign(directions)
        self._place_shortcut(centre, directions)
        return self

    def _place_shortcut(self, centre: np.ndarray, directions: np.ndarray) -> None:
        """The first-layer shortcut for this plane, where it applies (built anew for another
        number of directions, its pre-activations recomputed for every plane)."""
        k = directions.shape[0]
        if self._statistics.recompute is not None:
            self.shortcut = None  # statistics depend on the whole forward pass at each point
        elif self._allow_shortcut and (self.shortcut is None or self.shortcut.k != k):
            applies = FirstLayerShortcut.applies(self.model, self.n_examples, k, self._budget / 2)
            if applies or self.shortcut is not None:  # compiled functions kept when nothing changed
                self.shortcut = FirstLayerShortcut(self.model, self.layout, self._batches, k) if applies else None
                self._forget(POINTS)
        if self.shortcut is not None:
            self.shortcut.set_plane(centre, directions)

    @property
    def centre(self) -> np.ndarray | None:
        """The plane's centre, flat weights (size,) in the model's weight dtype; None before
        :meth:`set_plane`."""
        return None if self._centre is None else self._centre.numpy()

    @property
    def recompute(self) -> int | None:
        """The examples the batch-norm statistics are re-estimated on at every point (see
        :meth:`set_plane`); None where the statistics are given."""
        return self._statistics.recompute

    @property
    def statistics_move(self) -> bool:
        """Whether the non-trainable values move with the plane (:meth:`set_plane` was given
        their directions): they then depend on a point's plane coordinates, not only on its
        weights."""
        return self._statistics.directions is not None

    @property
    def _block(self) -> int:
        """Points per block for XLA and parallel parts: an eighth of the points per call the
        memory budget allows (at most 64), so that a call of any size is padded by less than a
        block and its blocks share out evenly."""
        return max(1, min(64, self._budget_points // 8))

    def _forget(self, which: str) -> None:
        """Drop the compiled functions for ``which`` input (they captured the old plane's shape)."""
        self._compiled = {key: fn for key, fn in self._compiled.items() if key[0] != which}

    # ---------------------------------------------------------------- values at one point

    def _unflatten(self, flat_weights) -> list:
        """The model's trainable weights, shaped, from a flat vector (size,)."""
        parts = tf.split(flat_weights, self.layout.sizes)
        return [tf.reshape(p, s) for p, s in zip(parts, self.layout.shapes)]

    def _forward(self, weights, non_trainable, xb):
        """The model's outputs on a batch in inference mode, and its layers' losses."""
        y_pred, _, losses = self.model.stateless_call(
            weights, non_trainable, xb, training=False, return_losses=True)
        return y_pred, losses

    def _predictor(self, flat_weights, coords, strategy: Strategy):
        """``predict(index, xb) -> (outputs, layer losses)`` at one point for batch ``index``:
        by the first-layer shortcut where the strategy uses it (``coords`` given), else the
        folded or the full forward pass, with statistics re-estimated first where asked."""
        non_trainable = self.non_trainable_at(coords)
        if coords is not None and strategy.shortcut:
            return lambda index, xb: self.shortcut.predict(index, coords, flat_weights, non_trainable)
        weights = self._unflatten(flat_weights)
        non_trainable = self._statistics.reestimate(self.model, weights, non_trainable)
        if strategy.fold:
            return lambda index, xb: self.folding.predict(weights, non_trainable, xb)
        return lambda index, xb: self._forward(weights, non_trainable, xb)

    def _point_values(self, flat_weights, coords, strategy: Strategy):
        """The parts (see :attr:`quantities`) at one flat weight vector, as one tensor (V,);
        ``coords`` (k,) the point's plane coordinates (None for weight vectors)."""
        predict = self._predictor(flat_weights, coords, strategy)
        acc = self.dtype  # sums in float32 (float64 for float64 models)
        data_sums = [tf.constant(0.0, acc)] * len(self._loss.weights)
        reg_sum = tf.constant(0.0, acc)
        # the standard error's sums in float64: the variance is a difference of two of them
        sum64 = sq_sum = tf.constant(0.0, tf.float64)
        metric_vars = [tf.constant(v) for v in self._metric_init]
        for index, (xb, yb) in enumerate(self._batches):
            y_pred, losses = predict(index, xb)
            n = float(xb.shape[0])
            data, scored = self._loss.data(yb, y_pred)
            for j, value in enumerate(data):
                data_sums[j] += value * n
            if self._population:
                each = self._loss.per_example(yb, y_pred)
                sum64 += tf.reduce_sum(each)
                sq_sum += tf.reduce_sum(tf.square(each))
            regularization = self._loss.regularization(losses)
            if regularization is not None:
                reg_sum += regularization * n
            if self._metrics is not None:
                metric_vars = self._metrics.stateless_update_state(metric_vars, yb, scored)
        values = [v / float(self.n_examples) for v in data_sums + [reg_sum]]
        if self._metrics is not None:
            result = self._metrics.stateless_result(metric_vars)
            values += [tf.cast(result[name], acc) for name in self.metric_names]
        if self._population:
            values = [tf.cast(v, tf.float64) for v in values]
            values += [sum64 / float(self.n_examples), sq_sum / float(self.n_examples)]
        return tf.stack(values)

    def non_trainable_at(self, coords=None) -> list:
        """The non-trainable values (batch-norm statistics) at plane coordinates ``coords`` (k,):
        the centre's, moved along their directions where the plane carries them."""
        return self._statistics.at(coords)

    def objective(self, flat_weights, non_trainable) -> tf.Tensor:
        """The loss the grid shows, as a differentiable function of the flat weights (size,): the
        data loss over every batch (each output's loss weighted as compiled) plus the
        regularisation; in inference mode with the given non-trainable values. For tracing."""
        weights = self._unflatten(flat_weights)
        total = tf.constant(0.0, self.dtype)
        for xb, yb in self._batches:
            y_pred, losses = self._forward(weights, non_trainable, xb)
            share = float(xb.shape[0]) / float(self.n_examples)
            data, _ = self._loss.data(yb, y_pred)
            total += share * self._loss.total(data, self._loss.regularization(losses))
        return total

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

    def force_strategy(self, strategy: Strategy) -> "LandscapeEvaluator":
        """Evaluate by ``strategy`` from now on (see :class:`Strategy`)."""
        if not isinstance(strategy, Strategy):
            raise TypeError(f"The 'strategy' parameter must be a Strategy. Got {strategy!r} "
                            f"instead.")
        self._strategy = strategy
        return self

    def _in_effect(self) -> Strategy:
        """The strategy as it takes effect: the shortcut and the fold only where they apply."""
        s = self._strategy
        return replace(s, shortcut=s.shortcut and self.shortcut is not None,
                       fold=s.fold and self.folding is not None)

    @property
    def timed_strategies(self) -> tuple[Strategy, ...]:
        """The strategies the tuner timed (none before it has chosen)."""
        return tuple(self._tuner.timings_) if self._tuner is not None else ()

    @property
    def choice(self) -> dict:
        """The strategy in use (method, shortcut, fold, xla, parallel parts, points per call)
        and, where it was chosen by timing the candidates (``tune``), their microseconds per
        point (``us_per_point``, by :attr:`Strategy.label`) and those of the chosen one by
        points per call (``us_per_point_by_points_per_call``)."""
        s = self._in_effect()
        tuned = self._tuner is not None and self._tuner.strategy_ is not None
        return {"tuned": tuned, "method": s.method, "shortcut": s.shortcut, "fold": s.fold,
                "xla": s.xla, "parallel": s.parallel, "points_per_call": self.points_per_call,
                **(self._tuner.report() if tuned else {})}

    def _tune(self, items: np.ndarray) -> None:
        """Choose the strategy on this job's points, unless jobs to evaluate untimed remain."""
        if self._untimed > 0:  # the first results come without waiting for the timings
            self._untimed -= 1
            return
        chosen = self._tuner.choose(self, items)
        if chosen is not None:
            self.force_strategy(chosen)
            self.points_per_call = self._tuner.points_per_call_
            log.debug("evaluation strategy: %s", self.choice)

    # ---------------------------------------------------------------- compiled calls

    def _function(self, which: str):
        """The compiled function for POINTS or WEIGHTS input and the strategy in effect, built
        once per plane shape."""
        strategy = self._in_effect()
        key = (which, strategy)
        if key not in self._compiled:
            if which == POINTS:
                width = int(self._directions.shape[0])

                def point(c):
                    flat = self._centre + tf.linalg.matvec(self._directions, c, transpose_a=True)
                    return self._point_values(flat, c, strategy)
            else:
                width = self.layout.size

                def point(flat):
                    return self._point_values(flat, None, strategy)
            out = tf.float64 if self._population else self.dtype
            body = call_body(point, strategy, width=width, out=out, strict=self.mode == "auto",
                             block=self._block)
            self._compiled[key] = tf.function(
                body, input_signature=[tf.TensorSpec([None, width], self.dtype)])
        return self._compiled[key]

    def compiled_call(self, coords) -> np.ndarray:
        """One compiled call at plane coordinates (P, k) in the model's weight dtype, by the
        strategy in effect (compiled on first use): the parts, (P, V) in :attr:`quantities`'s
        order. No fallback to a loop and no tuning: for timing strategies."""
        return self._function(POINTS)(coords).numpy()

    def _call(self, which: str, chunk):
        try:
            if self.method == "vectorized" and self.mode == "auto":
                with quiet_tensorflow():  # a failed vectorisation logs the whole graph node
                    return self._function(which)(chunk).numpy()
            return self._function(which)(chunk).numpy()
        except UNAVAILABLE as err:
            if self.method == "loop" or self.mode != "auto":
                raise
            # Some ops have no vectorised form; fall back to a compiled loop over points.
            log.info("vectorised evaluation unavailable (%s); using a compiled loop",
                     unavailable_reason(err))
            self._strategy = replace(self._strategy, method="loop")
            return self._function(which)(chunk).numpy()

    def _run(self, which: str, items: np.ndarray) -> dict[str, np.ndarray]:
        """The parts (see :attr:`quantities`) at every item; dict of (P,) float64 arrays."""
        if which == POINTS and self._directions is None:
            raise RuntimeError("Call set_plane(centre, directions) before evaluate().")
        out = np.empty((len(items), len(self.quantities.parts)), dtype=np.float64)
        if which == POINTS and self._tuner is not None and self._tuner.strategy_ is None:
            self._tune(items)
        # weight vectors are inputs of (points, size): the memory budget sets their calls
        size = self.points_per_call if which == POINTS else min(self.points_per_call,
                                                                 self.budget_points)
        for start in range(0, len(items), size):
            chunk = tf.constant(items[start:start + size])
            out[start:start + len(chunk)] = self._call(which, chunk)
        return {part.name: out[:, i] for i, part in enumerate(self.quantities.parts)}

    # ---------------------------------------------------------------- entry points

    def parts(self, which: str, items) -> dict[str, np.ndarray]:
        """The parts (``loss_data``, ``regularization``, metrics) at ``items``: plane coordinates
        (P, k) for POINTS, flat weight vectors (P, size) for WEIGHTS; dict of (P,) arrays.
        Shards of a dataset combine them exactly (:meth:`QuantitySet.combine`)."""
        items = np.asarray(items, dtype=self.dtype.as_numpy_dtype)
        if which == POINTS:
            items = items[:, None] if items.ndim == 1 else items
        elif which == WEIGHTS:
            items = np.atleast_2d(items)
        else:
            raise ValueError(f"The 'which' parameter must be {POINTS!r} or {WEIGHTS!r}. "
                             f"Got {which!r} instead.")
        return self._run(which, items)

    def weights_at(self, coords) -> np.ndarray:
        """Flat weight vectors (P, size) at plane coordinates (P, k) of the current plane, in the
        model's weight dtype."""
        if self._directions is None:
            raise RuntimeError("Call set_plane(centre, directions) before weights_at().")
        coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), -1)
        centre = self._centre.numpy().astype(np.float64)
        weights = centre + coords @ self._directions.numpy().astype(np.float64)
        return weights.astype(self.dtype.as_numpy_dtype)

    def evaluate(self, coords) -> dict[str, np.ndarray]:
        """Loss and metrics at plane coordinates of shape (P, k); dict of (P,) arrays."""
        return self.quantities.finish(self.parts(POINTS, coords))

    def evaluate_weights(self, weights) -> dict[str, np.ndarray]:
        """Loss and metrics at full flat weight vectors of shape (P, size); dict of (P,) arrays."""
        return self.quantities.finish(self.parts(WEIGHTS, weights))
