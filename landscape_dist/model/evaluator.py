"""Loss and metrics of a compiled Keras model at many points of a plane, per compiled call.

The weights at a point, ``centre + a*d0 + b*d1``, are formed inside a ``tf.function`` and fed to
``model.stateless_call``, vectorised over points with ``tf.vectorized_map`` (or, where a model's ops
do not vectorise, a compiled ``tf.map_fn`` loop). Non-trainable state (batch-norm statistics) stays
at the centre and layers run in inference mode. The data stays on the device as constant batches.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np
import tensorflow as tf

from ..core.layout import WeightLayout
from ..core.quantities import POINTS, WEIGHTS, Part, QuantitySet, StandardError
from ..core.labels import arrange_labels, label_arrays, map_labels
from ..errors import SourceError
from .checks import (DATA, activations_per_example, check_data, compile_metrics, dtype_policies,
                     loss_callable, loss_terms, output_names, per_example_loss, predictions,
                     raw_loss)
from .folding import FoldedForward
from .shortcut import FirstLayerShortcut

log = logging.getLogger(__name__)

_MAX_POINTS_PER_CALL = 1024
_MAX_LOOP_POINTS_PER_CALL = 4096  # a loop's calls: their inputs are coordinates, a few per point
_LARGER_CALL_S = 0.25  # the tuner tries calls larger than the budget's only where they are this quick
MODES = ("auto", "vectorized", "loop")


def intra_op_threads() -> int:
    """The threads TensorFlow's ops in this process may use: as configured, else the CPUs this
    process may run on."""
    configured = tf.config.threading.get_intra_op_parallelism_threads()
    if configured:
        return int(configured)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def strategy_label(method: str, shortcut: bool = False, fold: bool = False, xla: bool = False,
                   parallel: int = 1) -> str:
    """How a strategy is named in the timings: ``loop + fold + xla + parallel 2``."""
    return "".join((method, " + shortcut" if shortcut else "", " + fold" if fold else "",
                    " + xla" if xla else "", f" + parallel {parallel}" if parallel > 1 else ""))


def _blocked(body, block: int, width: int, threads: int, dtype):
    """``body`` over a call's items in blocks of exactly ``block`` rows, the last padded with
    copies of the final item (their values are dropped): one input shape for XLA to compile,
    whatever the call's size. With ``threads`` > 1 the blocks run at the same time, each with
    single-threaded ops (a tf.data map on a private pool of that many threads): many small
    per-point kernels keep every core busy instead of splitting each kernel over the cores."""
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False

    def run(batch):
        n = tf.shape(batch)[0]
        count = (n + block - 1) // block
        padded = tf.concat([batch, tf.repeat(batch[-1:], count * block - n, axis=0)], axis=0)
        blocks = tf.reshape(padded, tf.stack([count, block, width]))
        if threads > 1:
            data = tf.data.Dataset.from_tensor_slices(blocks).map(
                body, num_parallel_calls=threads, deterministic=True).with_options(options)
            out = data.batch(tf.cast(count, tf.int64)).get_single_element()
        else:
            out = tf.map_fn(body, blocks, fn_output_signature=dtype)
        return tf.reshape(out, tf.stack([count * block, -1]))[:n]

    return run


def _hold(values, held):
    """``values`` in variables: assigned into ``held`` where its shapes and dtypes match (so that
    compiled functions reading them stay valid), else in new variables. Returns the variables and
    whether they are new."""
    values = [np.asarray(v) for v in values]
    if held is not None and len(held) == len(values) and all(
            tuple(h.shape) == v.shape and h.dtype.as_numpy_dtype == v.dtype
            for h, v in zip(held, values)):
        for h, v in zip(held, values):
            h.assign(v)
        return held, False
    return [tf.Variable(v, trainable=False) for v in values], True


@contextlib.contextmanager
def _calibrating(model):
    """While tracing a calibration pass: batch-norm momentum 0 (the statistics become the
    calibration data's own), noise and dropout layers off; restored afterwards."""
    import keras

    saved = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            saved.append((layer, "momentum", layer.momentum))
            layer.momentum = 0.0
        elif isinstance(layer, (keras.layers.Dropout, keras.layers.GaussianDropout,
                                keras.layers.AlphaDropout)):
            saved.append((layer, "rate", layer.rate))
            layer.rate = 0.0
        elif isinstance(layer, keras.layers.GaussianNoise):
            saved.append((layer, "stddev", layer.stddev))
            layer.stddev = 0.0
    try:
        yield
    finally:
        for layer, name, value in saved:
            setattr(layer, name, value)


@contextlib.contextmanager
def _quiet_tensorflow():
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class LandscapeEvaluator:
    """Evaluates a compiled Keras model on fixed data at points of a plane through its weights.

    ``set_plane(centre, directions)`` fixes the plane; ``evaluate(coords)`` returns, for coords of
    shape (P, k), a dict of name -> (P,) float64 arrays: ``loss`` and every compiled metric.
    ``evaluate_weights(weights)`` does the same for full weight vectors (P, size). ``parts``
    returns the values before shards are combined, as :attr:`quantities` describes them.

    ``mode``: ``auto`` tries strict vectorisation over points and falls back to a compiled loop;
    ``vectorized`` lets ``pfor`` loop over just the ops it cannot vectorise; ``loop`` always
    loops. :attr:`method` is what is in use (``vectorized`` or ``loop``). The points of a call
    may also go in fixed blocks, each compiled by XLA (:attr:`xla`) and/or run :attr:`parallel`
    at a time with single-threaded ops; batch norms may be folded into the layers before them
    (:attr:`fold`); ``tune`` times these strategies on the first job of plane coordinates
    after ``tune_after`` such jobs evaluated as they come (:meth:`use` forces one).
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
        self.method = "loop" if mode == "loop" else "vectorized"
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
        self._metrics = compile_metrics(model)
        if self._metrics is not None:
            self._metrics.reset_state()
            self._metric_init = [v.numpy() for v in self._metrics.variables]
            self.metric_names = tuple(sorted(self._metrics.result().keys()))
        else:
            self._metric_init = []
            self.metric_names = ()
        self.quantities = self._describe()
        self.names = self.quantities.names
        self._size_batches(memory_budget_mb, batch_size)
        self._batches = [(tf.constant(x[i:i + self.batch_size]),
                          map_labels(lambda a: tf.constant(a[i:i + self.batch_size]), y))
                         for i in range(0, self.n_examples, self.batch_size)]
        self._non_trainable = _hold([v.numpy() for v in model.non_trainable_variables], None)[0]
        self._nt_dirs = None  # directions of the non-trainable values, when they move with the plane
        self._recompute = None  # examples batch-norm statistics are re-estimated on, per point
        self._calibration = None
        self._centre = None
        self._directions = None
        self._compiled = {}
        self._allow_shortcut = bool(shortcut)
        self.shortcut = None  # a FirstLayerShortcut once a plane is set, where one applies
        self._shortcut_on = True  # whether the shortcut (where there is one) is used
        # batch normalisations folded into the layers before them, where any can be
        self.folding = FoldedForward(model) if FoldedForward.applies(model) else None
        self.fold = False  # whether the folded forward pass is used
        self.xla = False  # blocks of points compiled by XLA
        self.parallel = 1  # blocks of a call evaluated at the same time, single-threaded each
        self._tune = bool(tune)
        self._untimed = int(tune_after)  # jobs still to evaluate before the timings
        self._timings: dict | None = None  # strategy -> seconds per point, once measured
        self._calls: dict = {}  # points per call -> seconds per point, for the chosen strategy

    def _describe(self) -> QuantitySet:
        """The parts this evaluator returns: the data loss (one part per output loss for a model
        with several, as Keras's ``evaluate`` reports ``<output>_loss``), the regularisation
        (added once) and the compiled metrics; ``loss`` is their weighted sum."""
        model = self.model
        several = len(self.output_names) > 1 or isinstance(model.loss, (list, tuple, dict))
        self._loss = None if several else loss_callable(model)
        if not several:  # the per-example form, for the standard error over a subset
            self._raw_loss = raw_loss(model)
            self._raw_loss_weight = 1.0
        self._terms = loss_terms(model, self.output_names) if several else None
        if self._terms is not None and len(self._terms) > 1:
            data = tuple(Part(f"{t.name}_loss", "mean") for t in self._terms)
            weights = tuple((f"{t.name}_loss", t.weight) for t in self._terms)
        else:
            weight = self._terms[0].weight if self._terms else 1.0
            data, weights = (Part("loss_data", "mean", stored=False),), (("loss_data", weight),)
        parts = (data + (Part("regularization", "first", stored=False),)
                 + tuple(Part(name, "mean") for name in self.metric_names))
        stderrs = ()
        if self._population:  # the per-example data loss's mean and mean square, in float64, last
            parts += (Part("loss_mean64", "mean", stored=False), Part("loss_sq", "mean", stored=False))
            stderrs = (StandardError("loss_stderr", (("loss_mean64", 1.0),), "loss_sq",
                                     *self._population),)
        return QuantitySet(parts, sums=(("loss", weights + (("regularization", 1.0),)),),
                           stderrs=stderrs)

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
        if recompute != self._recompute:
            self._recompute = recompute
            self._calibration = None if recompute is None else tf.constant(
                np.concatenate([xb.numpy() for xb, _ in self._batches])[:recompute])
            self._compiled = {}
        # held in variables: a new plane of the same shapes keeps the compiled functions
        fresh = False
        if non_trainable is not None:
            self._non_trainable, fresh = _hold(non_trainable, self._non_trainable)
        if non_trainable_directions is None:
            fresh |= self._nt_dirs is not None
            self._nt_dirs = None
        else:
            old = self._nt_dirs if self._nt_dirs and len(self._nt_dirs) == len(
                non_trainable_directions) else [None] * len(non_trainable_directions)
            held = [_hold([np.asarray(v, nt.dtype.as_numpy_dtype) for v, nt in
                           zip(d, self._non_trainable)], before)
                    for d, before in zip(non_trainable_directions, old)]
            fresh |= self._nt_dirs is None or any(new for _, new in held)
            self._nt_dirs = [values for values, _ in held]
        if fresh:
            self._compiled = {}
        if self._directions is None or tuple(self._directions.shape) != directions.shape:
            self._centre = tf.Variable(centre, trainable=False)
            self._directions = tf.Variable(directions, trainable=False)
            self._forget(POINTS)
        else:
            self._centre.assign(centre)
            self._directions.assign(directions)
        k = directions.shape[0]
        if self._recompute is not None:
            self.shortcut = None  # statistics depend on the whole forward pass at each point
        elif self._allow_shortcut and (self.shortcut is None or self.shortcut.k != k):
            applies = FirstLayerShortcut.applies(self.model, self.n_examples, k, self._budget / 2)
            if applies or self.shortcut is not None:  # compiled functions kept when nothing changed
                self.shortcut = FirstLayerShortcut(self.model, self.layout, self._batches, k) if applies else None
                self._forget(POINTS)
        if self.shortcut is not None:
            self.shortcut.set_plane(centre, directions)
        return self

    @property
    def budget_points(self) -> int:
        """Points per call the memory budget allows where every point of a call is held at once
        (the vectorised method, weight vectors as inputs); a loop's calls may be larger."""
        return self._budget_points

    @property
    def _block(self) -> int:
        """Points per block for XLA and parallel parts: an eighth of the points per call the
        memory budget allows (at most 64), so that a call of any size is padded by less than a
        block and its blocks share out evenly."""
        return max(1, min(64, self._budget_points // 8))

    def _forget(self, which: str) -> None:
        """Drop the compiled functions for ``which`` input (they captured the old plane's shape)."""
        self._compiled = {key: fn for key, fn in self._compiled.items() if key[0] != which}

    # ---------------------------------------------------------------- evaluation

    def _point_values(self, flat_weights, coords=None):
        """The parts (see :attr:`quantities`) at one flat weight vector, as one tensor.
        With ``coords`` (the point's plane coordinates) the first-layer shortcut is used."""
        non_trainable = self.non_trainable_at(coords)
        if coords is None or self.shortcut is None or not self._shortcut_on:
            parts = tf.split(flat_weights, self.layout.sizes)
            weights = [tf.reshape(p, s) for p, s in zip(parts, self.layout.shapes)]
            if self._recompute is not None:
                with _calibrating(self.model):
                    _, non_trainable = self.model.stateless_call(
                        weights, non_trainable, self._calibration, training=True)
            if self.fold and self.folding is not None:
                def predict(index, xb):
                    return self.folding.predict(weights, non_trainable, xb)
            else:
                def predict(index, xb):
                    y_pred, _, losses = self.model.stateless_call(
                        weights, non_trainable, xb, training=False, return_losses=True)
                    return y_pred, losses
        else:
            def predict(index, xb):
                return self.shortcut.predict(index, coords, flat_weights, non_trainable)
        acc = self.dtype  # sums in float32 (float64 for float64 models)
        n_data = 1 if self._terms is None else max(1, len(self._terms))
        loss_sums = [tf.constant(0.0, acc)] * n_data
        reg_sum = tf.constant(0.0, acc)
        # the standard error's sums in float64: the variance is a difference of two of them
        sum64 = sq_sum = tf.constant(0.0, tf.float64)
        metric_vars = [tf.constant(v) for v in self._metric_init]
        for index, (xb, yb) in enumerate(self._batches):
            y_pred, losses = predict(index, xb)
            n = float(xb.shape[0])
            if self._terms is None:
                loss_sums[0] += tf.cast(self._loss(yb, y_pred), acc) * n
                if self._population:
                    each = self._raw_loss_weight * per_example_loss(self._raw_loss, yb, y_pred,
                                                                    tf.float64)
            else:
                preds, labels = predictions(y_pred, self.output_names), label_arrays(yb)
                for j, term in enumerate(self._terms):
                    loss_sums[j] += tf.cast(term.fn(labels[term.output], preds[term.output]), acc) * n
                if self._population:
                    each = tf.add_n([term.weight * per_example_loss(
                        term.fn, labels[term.output], preds[term.output], tf.float64)
                        for term in self._terms])
                y_pred = preds
            if self._population:
                sum64 += tf.reduce_sum(each)
                sq_sum += tf.reduce_sum(tf.square(each))
            if losses:  # regularisation, as Keras adds it to each batch's loss
                reg_sum += tf.add_n([tf.cast(v, acc) for v in losses]) * n
            if self._metrics is not None:
                metric_vars = self._metrics.stateless_update_state(metric_vars, yb, y_pred)
        values = [v / float(self.n_examples) for v in loss_sums] + [reg_sum / float(self.n_examples)]
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
        if coords is None or self._nt_dirs is None:
            return self._non_trainable
        return [nt + tf.add_n([tf.cast(coords[j], nt.dtype) * d[i]
                               for j, d in enumerate(self._nt_dirs)])
                for i, nt in enumerate(self._non_trainable)]

    def objective(self, flat_weights, non_trainable) -> tf.Tensor:
        """The loss the grid shows, as a differentiable function of the flat weights (size,): the
        data loss over every batch (each output's loss weighted as compiled) plus the
        regularisation; in inference mode with the given non-trainable values. For tracing."""
        parts = tf.split(flat_weights, self.layout.sizes)
        weights = [tf.reshape(p, s) for p, s in zip(parts, self.layout.shapes)]
        total = tf.constant(0.0, self.dtype)
        for xb, yb in self._batches:
            y_pred, _, losses = self.model.stateless_call(
                weights, non_trainable, xb, training=False, return_losses=True)
            share = float(xb.shape[0]) / float(self.n_examples)
            if self._terms is None:
                batch = tf.cast(self._loss(yb, y_pred), self.dtype)
            else:
                preds, labels = predictions(y_pred, self.output_names), label_arrays(yb)
                batch = tf.add_n([term.weight * tf.cast(term.fn(labels[term.output],
                                                                preds[term.output]), self.dtype)
                                  for term in self._terms])
            if losses:
                batch += tf.add_n([tf.cast(v, self.dtype) for v in losses])
            total += share * batch
        return total

    def _function(self, which: str):
        """The compiled function for POINTS or WEIGHTS input and the current strategy, built once
        per plane shape."""
        key = (which, self.method, self.shortcut is not None and self._shortcut_on,
               self.folding is not None and self.fold, self.xla, self.parallel)
        if key not in self._compiled:
            if which == POINTS:
                k = int(self._directions.shape[0])

                def point(c):
                    flat = self._centre + tf.linalg.matvec(self._directions, c, transpose_a=True)
                    return self._point_values(flat, c)
            else:
                k, point = self.layout.size, self._point_values
            out = tf.float64 if self._population else self.dtype
            if self.method == "loop":
                body = lambda batch: tf.map_fn(point, batch, fn_output_signature=out)  # noqa: E731
            else:
                # 'auto' first tries strict vectorisation and falls back to a loop over points;
                # 'vectorized' lets pfor loop over just the ops it cannot vectorise.
                strict = self.mode == "auto"
                body = lambda batch: tf.vectorized_map(  # noqa: E731
                    point, batch, fallback_to_while_loop=not strict)
            if self.xla:  # one fused program per block: no per-op dispatch, fused elementwise work
                body = tf.function(body, jit_compile=True)
            if self.xla or self.parallel > 1:
                body = _blocked(body, self._block, k, self.parallel, out)
            self._compiled[key] = tf.function(
                body, input_signature=[tf.TensorSpec([None, k], self.dtype)])
        return self._compiled[key]

    def _run(self, which: str, items: np.ndarray) -> dict[str, np.ndarray]:
        """The parts (see :attr:`quantities`) at every item; dict of (P,) float64 arrays."""
        if which == POINTS and self._directions is None:
            raise RuntimeError("Call set_plane(centre, directions) before evaluate().")
        out = np.empty((len(items), len(self.quantities.parts)), dtype=np.float64)
        if which == POINTS and self._tune and self._timings is None:
            if self._untimed > 0:  # the first results come without waiting for the timings
                self._untimed -= 1
            else:
                self._choose(items)
        # weight vectors are inputs of (points, size): the memory budget sets their calls
        size = self.points_per_call if which == POINTS else min(self.points_per_call,
                                                                 self.budget_points)
        for start in range(0, len(items), size):
            chunk = tf.constant(items[start:start + size])
            out[start:start + len(chunk)] = self._call(which, chunk)
        return {part.name: out[:, i] for i, part in enumerate(self.quantities.parts)}

    _TUNE_MIN_POINTS = 64  # a first job smaller than this is evaluated as it comes, untimed

    def use(self, method: str | None = None, shortcut: bool | None = None,
            fold: bool | None = None, xla: bool | None = None,
            parallel: int | None = None) -> "LandscapeEvaluator":
        """Force a strategy (None keeps the current setting): ``method`` 'vectorized' or 'loop',
        the first-layer ``shortcut`` and the batch-norm ``fold`` (each where it applies; the
        shortcut wins where both are on), ``xla`` (blocks of points compiled by XLA),
        ``parallel`` (blocks of a call run at the same time, single-threaded each)."""
        if method is not None:
            if method not in ("vectorized", "loop"):
                raise ValueError(f"The 'method' parameter must be 'vectorized' or 'loop'. "
                                 f"Got {method!r} instead.")
            self.method = method
        if shortcut is not None:
            self._shortcut_on = bool(shortcut)
        if fold is not None:
            self.fold = bool(fold)
        if xla is not None:
            self.xla = bool(xla)
        if parallel is not None:
            if int(parallel) < 1:
                raise ValueError(f"The 'parallel' parameter must be an integer >= 1. "
                                 f"Got {parallel!r} instead.")
            self.parallel = int(parallel)
        return self

    def _choose(self, items: np.ndarray) -> None:
        """Time the strategies on the first job's points (each compiled first, then timed twice
        on the same points, the better pass kept) and keep the fastest. First vectorised or
        looped over points (``mode: auto``), each plain, with the first-layer shortcut and with
        batch norms folded (each where it applies); then the best of those as a loop in blocks
        compiled by XLA, and in blocks run one per thread with single-threaded ops (with and
        without XLA) where this process has several threads; then fewer points per call. Every
        strategy gives the same values up to float32 rounding. Recorded in :attr:`choice`."""
        # a model whose memory budget fits only a few points per call is costly per point: a
        # few points time it well enough
        least = 8 if self.points_per_call <= 4 else self._TUNE_MIN_POINTS
        if len(items) < least:
            return
        budget_points = self.points_per_call
        n = min(len(items), max(budget_points, least))
        sample = tf.constant(items[:n])

        def timed(size: int, points=sample) -> float:
            """Seconds per point of the current strategy over ``points``, ``size`` per call."""
            t0 = time.perf_counter()
            for start in range(0, len(points), size):
                self._function(POINTS)(points[start:start + size]).numpy()
            return (time.perf_counter() - t0) / len(points)

        timings = {}

        def candidate(*strategy) -> None:  # (method, shortcut, fold, xla, parallel)
            self._strategy = strategy
            try:
                with _quiet_tensorflow():
                    timed(budget_points)  # compiles, and warms the shapes up
                    # the better of two passes: one pass is easily disturbed on a shared machine
                    timings[strategy] = min(timed(budget_points), timed(budget_points))
            except (ValueError, TypeError, NotImplementedError, tf.errors.OpError):
                pass  # e.g. ops without a vectorised form, or without an XLA kernel

        default = self._strategy
        methods = ("vectorized", "loop") if self.mode == "auto" else (self.method,)
        variants = ([(True, False)] if self.shortcut is not None else []) + [(False, False)] + (
            [(False, True)] if self.folding is not None else [])
        for method in methods:
            for shortcut, fold in variants:
                candidate(method, shortcut, fold, False, 1)
        # XLA and single-threaded kernels round mixed precision differently (up to 1e-2 for
        # bfloat16), and XLA a float64 model to float32's precision: offered where they agree
        # with the default to float32 rounding
        policies = dtype_policies(self.model)
        if timings and "loop" in methods and policies in (["float32"], ["float64"]):
            _, shortcut, fold, _, _ = min(timings, key=timings.get)
            # a tf.data map runs on the host: parallel blocks are for models evaluated on CPUs
            on_gpu = bool(tf.config.list_logical_devices("GPU"))
            threads = 1 if on_gpu else min(intra_op_threads(), n)
            second = [(True, 1)] if policies == ["float32"] else []  # (xla, parallel)
            if threads > 1:
                second += [(False, threads)] + ([(True, threads)] if second else [])
            for xla, parallel in second:
                candidate("loop", shortcut, fold, xla, parallel)
        if not timings:
            self._strategy = default
            return
        best = min(timings, key=timings.get)
        self._strategy = best
        calls = {budget_points: timings[best]}
        sizes = [s for s in (budget_points // 4, budget_points // 16) if s >= 8]
        if best[0] == "loop":
            # a loop holds a few points' activations at a time, whatever the call's size (the
            # budget is for the vectorised method): larger calls where the job has the points
            # and a call stays short (they pay where the per-call overhead is what remains)
            sizes += [s for s in (2 * budget_points, 4 * budget_points)
                      if s <= min(len(items), _MAX_LOOP_POINTS_PER_CALL)
                      and timings[best] * s <= _LARGER_CALL_S]
        for size in sizes:  # the same function takes any number of points
            points = sample if size <= n else tf.constant(items[:size])
            timed(size, points)  # new shapes warm up first
            calls[size] = timed(size, points)
        self.points_per_call = min(calls, key=calls.get)
        self._timings, self._calls = timings, calls
        log.debug("evaluation strategy: %s", self.choice)

    @property
    def _strategy(self) -> tuple:
        """(method, shortcut, fold, xla, parallel) as set, whether or not each applies."""
        return self.method, self._shortcut_on, self.fold, self.xla, self.parallel

    @_strategy.setter
    def _strategy(self, strategy: tuple) -> None:
        self.method, self._shortcut_on, self.fold, self.xla, self.parallel = strategy

    @property
    def timed_strategies(self) -> tuple:
        """The strategies the tuner timed, each (method, shortcut, fold, xla, parallel)."""
        return tuple(self._timings or ())

    @property
    def choice(self) -> dict:
        """The strategy in use (method, shortcut, fold, xla, parallel parts, points per call)
        and, where it was chosen by timing the candidates (``tune``), their microseconds per
        point."""
        timed = {} if self._timings is None else {
            "us_per_point": {strategy_label(*key): round(t * 1e6, 2)
                             for key, t in self._timings.items()},
            "us_per_point_by_points_per_call": {str(k): round(v * 1e6, 2)
                                                for k, v in self._calls.items()}}
        return {"tuned": self._timings is not None, "method": self.method,
                "shortcut": self.shortcut is not None and self._shortcut_on,
                "fold": self.folding is not None and self.fold, "xla": self.xla,
                "parallel": self.parallel, "points_per_call": self.points_per_call, **timed}

    def _call(self, which: str, chunk):
        try:
            if self.method == "vectorized" and self.mode == "auto":
                with _quiet_tensorflow():  # a failed vectorisation logs the whole graph node
                    return self._function(which)(chunk).numpy()
            return self._function(which)(chunk).numpy()
        except (ValueError, TypeError, NotImplementedError, tf.errors.OpError) as err:
            if self.method == "loop" or self.mode != "auto":
                raise
            # Some ops have no vectorised form; fall back to a compiled loop over points.
            log.info("vectorised evaluation unavailable (%s); using a compiled loop",
                     str(err).splitlines()[0] if str(err) else type(err).__name__)
            self.method = "loop"
            return self._function(which)(chunk).numpy()

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
