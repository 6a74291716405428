"""Loss and metrics of a compiled Keras model at many points of a plane, per compiled call.

The weights at a point, ``centre + a*d0 + b*d1``, are formed inside a ``tf.function`` and fed to
``model.stateless_call``, vectorised over points with ``tf.vectorized_map`` (or, where a model's ops
do not vectorise, a compiled ``tf.map_fn`` loop). Non-trainable state (batch-norm statistics) stays
at the centre and layers run in inference mode. The data stays on the device as constant batches.
How a call's points are evaluated is a :class:`~landscape_dist.model.strategy.Strategy`, forced
or chosen by timing (:mod:`landscape_dist.model.tuning`, :mod:`.strategy_control`). What a point
yields is summed over the batches in :mod:`.point_values`; batch and call sizes come from the
memory budget (:mod:`.sizing`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import tensorflow as tf

from ..core.layout import WeightLayout
from ..core.quantities import POINTS, WEIGHTS
from ..core.labels import arrange_labels, map_labels
from ..errors import SourceError
from .checks import DATA, check_data, compile_metrics, output_names
from .choosing import StrategyChooser
from .folding import FoldedForward
from .point_values import PointValues
from .shortcut import FirstLayerShortcut
from .sizing import size_calls
from .statistics import PlaneStatistics
from .strategy import UNAVAILABLE, Strategy, call_body, quiet_tensorflow, unavailable_reason
from .strategy_control import StrategyControl
from .tuning import StrategyTuner
from .tuning_cache import TuningCache, cache_dir

log = logging.getLogger(__name__)

MODES = ("auto", "vectorized", "loop")


class LandscapeEvaluator(StrategyControl):
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
    ``tune_after`` such jobs evaluated as they come (:meth:`force_strategy` forces one), within
    ``tune_share`` of the sweep's remaining time where :meth:`expect_jobs` says how many jobs
    are to come (None: no bound); ``tuning_cache``: a directory where choices are kept per
    model and machine and read back (``'default'``: the user's cache directory; None: none).
    See :class:`~landscape_dist.model.choosing.StrategyChooser`.
    """

    def __init__(self, model, x, y, *, batch_size: int | None = None,
                 memory_budget_mb: float = 256.0, mode: str = "auto", shortcut: bool = True,
                 tune: bool = False, tune_after: int = 0, tune_share: float | None = None,
                 tuning_cache=None, population: tuple[int, int] | None = None):
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
        sizes = size_calls(model, self.n_examples, self.layout.size, memory_budget_mb, batch_size)
        self.batch_size, self.points_per_call = sizes.batch_size, sizes.points_per_call
        self._budget_points, self._budget, self._block = (sizes.budget_points, sizes.budget_bytes,
                                                          sizes.block)
        self._batches = [(tf.constant(x[i:i + self.batch_size]),
                          map_labels(lambda a: tf.constant(a[i:i + self.batch_size]), y))
                         for i in range(0, self.n_examples, self.batch_size)]
        self._values = PointValues(model, self.layout, self._batches, self.n_examples, self.dtype,
                                   self._population)
        self.metric_names = self._values.metric_names
        self.quantities = self._values.quantities
        self.names = self.quantities.names
        self._init_plane_state(shortcut)
        # batch normalisations folded into the layers before them, where any can be
        self.folding = FoldedForward(model) if FoldedForward.applies(model) else None
        # the untuned default: the shortcut where it applies, batch norms folded where that is
        # expected to pay, no blocks
        self._strategy = Strategy("loop" if mode == "loop" else "vectorized", shortcut=True,
                                  fold=self.folding is not None and self.folding.pays(self.n_examples))
        # why strict vectorisation failed (mode 'auto'), once it has
        self.vectorize_failure: str | None = None
        self._tuner = StrategyTuner(share=tune_share) if tune else None
        directory = cache_dir(tuning_cache) if tune else None
        self._chooser = (StrategyChooser(self._tuner, TuningCache(directory) if directory else None,
                                         untimed=tune_after) if tune else None)

    def _init_plane_state(self, shortcut: bool) -> None:
        """No plane yet: the model's non-trainable values, no compiled functions."""
        self._statistics = PlaneStatistics(self.model)
        self._centre = None
        self._directions = None
        self._compiled = {}
        self._allow_shortcut = bool(shortcut)
        self.shortcut = None  # a FirstLayerShortcut once a plane is set, where one applies

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

    def _forget(self, which: str) -> None:
        """Drop the compiled functions for ``which`` input (they captured the old plane's shape)."""
        self._compiled = {key: fn for key, fn in self._compiled.items() if key[0] != which}

    # ---------------------------------------------------------------- values at one point

    def _predictor(self, flat_weights, coords, strategy: Strategy):
        """``predict(index, xb) -> (outputs, layer losses)`` at one point for batch ``index``:
        by the first-layer shortcut where the strategy uses it (``coords`` given), else the
        folded or the full forward pass, with statistics re-estimated first where asked."""
        non_trainable = self.non_trainable_at(coords)
        if coords is not None and strategy.shortcut:
            return lambda index, xb: self.shortcut.predict(index, coords, flat_weights, non_trainable)
        weights = self._values.unflatten(flat_weights)
        non_trainable = self._statistics.reestimate(self.model, weights, non_trainable)
        forward = self.folding.predict if strategy.fold else self._values.forward
        if strategy.method == "loop":
            # one trace of the model for every data batch, not one per batch
            return self._values.traced_once(lambda xb: forward(weights, non_trainable, xb))
        return lambda index, xb: forward(weights, non_trainable, xb)

    def _point_values(self, flat_weights, coords, strategy: Strategy):
        """The parts (see :attr:`quantities`) at one flat weight vector, as one tensor (V,);
        ``coords`` (k,) the point's plane coordinates (None for weight vectors)."""
        return self._values.values(self._predictor(flat_weights, coords, strategy))

    def non_trainable_at(self, coords=None) -> list:
        """The non-trainable values (batch-norm statistics) at plane coordinates ``coords`` (k,):
        the centre's, moved along their directions where the plane carries them."""
        return self._statistics.at(coords)

    def objective(self, flat_weights, non_trainable) -> tf.Tensor:
        """The loss the grid shows, as a differentiable function of the flat weights (size,): the
        data loss over every batch (each output's loss weighted as compiled) plus the
        regularisation; in inference mode with the given non-trainable values. For tracing."""
        return self._values.objective(flat_weights, non_trainable)

    # ---------------------------------------------------------------- compiled calls

    def _function(self, which: str, single: bool = False):
        """The compiled function for POINTS or WEIGHTS input and the strategy in effect, built
        once per plane shape. ``single``: for calls of one item each, where the compiled loop
        is that item's values alone (its loop cost a big model's first call a tenth more)."""
        strategy = self.effective_strategy
        single = single and strategy.method == "loop" and not strategy.blocked
        key = (which, strategy, single)
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
            strict = self.mode == "auto" and not strategy.fallback
            if single:
                def body(items):
                    return tf.expand_dims(point(items[0]), 0)
            else:
                body = call_body(point, strategy, width=width, out=out, strict=strict,
                                 block=self._block)
            # no AutoGraph: the body has no tensor-dependent Python control flow (Keras runs
            # its layers unconverted too), and converting the model's code took most of a
            # cold first call (~2 s of 2.2 s on a small transformer)
            self._compiled[key] = tf.function(
                body, input_signature=[tf.TensorSpec([1 if single else None, width], self.dtype)],
                autograph=False)
        return self._compiled[key]

    def compiled_call(self, coords) -> np.ndarray:
        """One compiled call at plane coordinates (P, k) in the model's weight dtype, by the
        strategy in effect (compiled on first use): the parts, (P, V) in :attr:`quantities`'s
        order. No fallback to a loop and no tuning: for timing strategies."""
        return self._function(POINTS)(coords).numpy()

    def _call(self, which: str, chunk, single: bool = False):
        try:
            if self.method == "vectorized" and self.mode == "auto":
                with quiet_tensorflow():  # a failed vectorisation logs the whole graph node
                    return self._function(which, single)(chunk).numpy()
            return self._function(which, single)(chunk).numpy()
        except UNAVAILABLE as err:
            if self.method == "loop" or self.mode != "auto":
                raise
            # Some ops have no vectorised form; fall back to a compiled loop over points.
            self.note_vectorize_failure(err)
            log.info("vectorised evaluation unavailable (%s); using a compiled loop",
                     unavailable_reason(err))
            self._strategy = replace(self._strategy, method="loop", fallback=False)
            return self._function(which, single)(chunk).numpy()

    def _run(self, which: str, items: np.ndarray) -> dict[str, np.ndarray]:
        """The parts (see :attr:`quantities`) at every item; dict of (P,) float64 arrays."""
        if which == POINTS and self._directions is None:
            raise RuntimeError("Call set_plane(centre, directions) before evaluate().")
        out = np.empty((len(items), len(self.quantities.parts)), dtype=np.float64)
        choosing = which == POINTS and self._chooser is not None
        if choosing:
            self._chooser.before_job(self, items)
        t0 = time.perf_counter()
        # weight vectors are inputs of (points, size): the memory budget sets their calls
        size = self.points_per_call if which == POINTS else min(self.points_per_call,
                                                                 self.budget_points)
        for start in range(0, len(items), size):
            chunk = tf.constant(items[start:start + size])
            out[start:start + len(chunk)] = self._call(which, chunk, single=size == 1)
        if choosing:
            self._chooser.after_job(self, time.perf_counter() - t0, len(items))
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
