"""A compiled model's loss on one batch, as the evaluator and the Hessian's objective both sum it."""

from __future__ import annotations

import tensorflow as tf

from ..core.labels import label_arrays
from ..core.quantities import Part, QuantitySet, StandardError
from .checks import loss_callable, loss_terms, per_example_loss, predictions, raw_loss


class BatchLoss:
    """The loss of a compiled model on a batch, in ``dtype`` (the model's variables').

    A model with one loss has one data term; one with several (several outputs, or losses given
    as a list or dict) one per output loss, each weighted in the total by :attr:`weights` as
    Keras's ``evaluate`` weighs them. The regularisation (the layers' losses) is added once.
    """

    def __init__(self, model, output_names: list[str], dtype):
        self.output_names = output_names
        self.dtype = dtype
        several = len(output_names) > 1 or isinstance(model.loss, (list, tuple, dict))
        self._loss = None if several else loss_callable(model)
        self._raw = None if several else raw_loss(model)  # its per-example form
        self.terms = loss_terms(model, output_names) if several else None

    @property
    def weights(self) -> tuple[float, ...]:
        """The weight of each data term in the total loss."""
        return tuple(t.weight for t in self.terms) if self.terms else (1.0,)

    @property
    def term_names(self) -> tuple[str, ...] | None:
        """The output names of the data terms where there are several of them, else None."""
        return tuple(t.name for t in self.terms) if self.terms and len(self.terms) > 1 else None

    def quantities(self, metric_names: tuple[str, ...],
                   population: tuple[int, int] | None = None) -> QuantitySet:
        """The parts an evaluation returns: the data loss (one part per output loss for a model
        with several, as Keras's ``evaluate`` reports ``<output>_loss``), the regularisation
        (added once) and the compiled metrics; ``loss`` is their weighted sum. With the
        ``population`` (n, N) of a random subset of examples, the per-example data loss's mean
        and mean square too (in float64, last) and its standard error ``loss_stderr``."""
        names, weights = self.term_names, self.weights
        if names:
            data = tuple(Part(f"{name}_loss", "mean") for name in names)
            sums = tuple((f"{name}_loss", w) for name, w in zip(names, weights))
        else:
            data, sums = (Part("loss_data", "mean", stored=False),), (("loss_data", weights[0]),)
        parts = (data + (Part("regularization", "first", stored=False),)
                 + tuple(Part(name, "mean") for name in metric_names))
        stderrs = ()
        if population:
            parts += (Part("loss_mean64", "mean", stored=False), Part("loss_sq", "mean", stored=False))
            stderrs = (StandardError("loss_stderr", (("loss_mean64", 1.0),), "loss_sq",
                                     *population),)
        return QuantitySet(parts, sums=(("loss", sums + (("regularization", 1.0),)),),
                           stderrs=stderrs)

    def data(self, yb, y_pred) -> tuple[list, object]:
        """The data terms on one batch (each reduced over the batch, unweighted, in ``dtype``)
        and the predictions as compiled metrics take them (a list by output where there are
        several losses, else as the model returns them)."""
        if self.terms is None:
            return [tf.cast(self._loss(yb, y_pred), self.dtype)], y_pred
        preds, labels = predictions(y_pred, self.output_names), label_arrays(yb)
        return [tf.cast(t.fn(labels[t.output], preds[t.output]), self.dtype)
                for t in self.terms], preds

    def regularization(self, losses) -> tf.Tensor | None:
        """The regularisation of one forward pass (the layers' ``losses``, as Keras adds them to
        each batch's loss), None where there is none."""
        if not losses:
            return None
        return tf.add_n([tf.cast(v, self.dtype) for v in losses])

    def total(self, data: list, regularization) -> tf.Tensor:
        """The loss the grid shows on one batch: the weighted data terms plus the regularisation."""
        if self.terms is None:
            batch = data[0]
        else:
            batch = tf.add_n([t.weight * value for t, value in zip(self.terms, data)])
        if regularization is not None:
            batch += regularization
        return batch

    def per_example(self, yb, y_pred) -> tf.Tensor:
        """The weighted data loss of each example of one batch, (batch,) in float64."""
        if self.terms is None:
            return per_example_loss(self._raw, yb, y_pred, tf.float64)
        preds, labels = predictions(y_pred, self.output_names), label_arrays(yb)
        return tf.add_n([t.weight * per_example_loss(t.fn, labels[t.output], preds[t.output],
                                                     tf.float64) for t in self.terms])
