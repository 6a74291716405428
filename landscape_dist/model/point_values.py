"""A compiled model's loss parts and metrics at one point, summed over fixed data batches.

What a point yields (its parts, see :attr:`PointValues.quantities`) is computed here from a
``predict(index, xb)`` function; how that prediction is made (the full forward pass, a folded
one, the first-layer shortcut) and how points are batched into compiled calls are the
evaluator's.
"""

from __future__ import annotations

import tensorflow as tf

from ..core.layout import WeightLayout
from .checks import compile_metrics, output_names
from .loss import BatchLoss


class PointValues:
    """The parts of ``model``'s loss and its compiled metrics at one point, over ``batches``
    (a list of (x, y) constant batches holding ``n_examples`` examples), in ``dtype`` (the
    model's variables'). ``population`` (n, N): the batches hold (a shard of) a random subset
    of n of the N examples; the sums of the per-example loss and of its square are then parts
    too (the standard error of the data loss)."""

    def __init__(self, model, layout: WeightLayout, batches: list, n_examples: int, dtype,
                 population: tuple[int, int] | None = None):
        self.model = model
        self.layout = layout
        self.batches = batches
        self.n_examples = n_examples
        self.dtype = dtype
        self.population = population
        self._read_metrics()
        self.loss = BatchLoss(model, output_names(model), dtype)
        self.quantities = self.loss.quantities(self.metric_names, population)

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

    def unflatten(self, flat_weights) -> list:
        """The model's trainable weights, shaped, from a flat vector (size,)."""
        parts = tf.split(flat_weights, self.layout.sizes)
        return [tf.reshape(p, s) for p, s in zip(parts, self.layout.shapes)]

    def forward(self, weights, non_trainable, xb):
        """The model's outputs on a batch in inference mode, and its layers' losses."""
        y_pred, _, losses = self.model.stateless_call(
            weights, non_trainable, xb, training=False, return_losses=True)
        return y_pred, losses

    def traced_once(self, forward):
        """``predict(index, xb)`` from ``forward(xb) -> (outputs, layer losses)`` traced once for
        batches of any size: inlined in the graph per batch, a model traced per batch cost each
        batch its own trace (most of a deep net's first call where the data take several). For
        the compiled loop over points; ``pfor`` vectorises the inlined form."""
        if len(self.batches) < 2:
            return lambda index, xb: forward(xb)
        spec = tf.nest.map_structure(
            lambda t: tf.TensorSpec([None] + list(t.shape[1:]), t.dtype), self.batches[0][0])
        traced = tf.function(forward, input_signature=[spec], autograph=False)
        return lambda index, xb: traced(xb)

    def values(self, predict) -> tf.Tensor:
        """The parts (see :attr:`quantities`) at one point, as one tensor (V,); ``predict(index,
        xb) -> (outputs, layer losses)`` gives the point's predictions on batch ``index``."""
        acc = self.dtype  # sums in float32 (float64 for float64 models)
        data_sums = [tf.constant(0.0, acc)] * len(self.loss.weights)
        reg_sum = tf.constant(0.0, acc)
        # the standard error's sums in float64: the variance is a difference of two of them
        sum64 = sq_sum = tf.constant(0.0, tf.float64)
        metric_vars = [tf.constant(v) for v in self._metric_init]
        for index, (xb, yb) in enumerate(self.batches):
            y_pred, losses = predict(index, xb)
            n = float(xb.shape[0])
            data, scored = self.loss.data(yb, y_pred)
            for j, value in enumerate(data):
                data_sums[j] += value * n
            if self.population:
                each = self.loss.per_example(yb, y_pred)
                sum64 += tf.reduce_sum(each)
                sq_sum += tf.reduce_sum(tf.square(each))
            regularization = self.loss.regularization(losses)
            if regularization is not None:
                reg_sum += regularization * n
            if self._metrics is not None:
                metric_vars = self._metrics.stateless_update_state(metric_vars, yb, scored)
        values = [v / float(self.n_examples) for v in data_sums + [reg_sum]]
        if self._metrics is not None:
            result = self._metrics.stateless_result(metric_vars)
            values += [tf.cast(result[name], acc) for name in self.metric_names]
        if self.population:
            values = [tf.cast(v, tf.float64) for v in values]
            values += [sum64 / float(self.n_examples), sq_sum / float(self.n_examples)]
        return tf.stack(values)

    def objective(self, flat_weights, non_trainable) -> tf.Tensor:
        """The loss the grid shows, as a differentiable function of the flat weights (size,): the
        data loss over every batch (each output's loss weighted as compiled) plus the
        regularisation; in inference mode with the given non-trainable values. For tracing."""
        weights = self.unflatten(flat_weights)
        total = tf.constant(0.0, self.dtype)
        for xb, yb in self.batches:
            y_pred, losses = self.forward(weights, non_trainable, xb)
            share = float(xb.shape[0]) / float(self.n_examples)
            data, _ = self.loss.data(yb, y_pred)
            total += share * self.loss.total(data, self.loss.regularization(losses))
        return total
