"""The loss and its gradient at given weights on a worker.

Both are of :meth:`LandscapeEvaluator.objective`, the function the Hessian products differentiate
twice (:mod:`.hessian`): the data loss over the worker's whole dataset (each output's loss weighted
as compiled, :class:`~.loss.BatchLoss`) plus the regularisation, layers in inference mode, the
non-trainable values (batch-norm statistics) at the plane's centre. Shards combine exactly: a
shard's loss is its mean data loss plus the regularisation, so the size-weighted mean of the
shards' losses, and of their gradients, is the loss and the gradient of the whole data.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .hessian import refuse_recomputed_statistics


class LossGradients:
    """``at(weights)``: the loss (P,) and its gradient (P, size) at each row of ``weights``
    (P, size) on an evaluator's model and data, by reverse-mode automatic differentiation."""

    def __init__(self, evaluator):
        refuse_recomputed_statistics(evaluator, "Gradients")
        self.evaluator = evaluator
        self._compiled = None
        self.rows_done = 0

    @property
    def points_per_call(self) -> int:
        """Rows per compiled call: a reverse pass holds about twice the activations of a loss
        evaluation."""
        ev = self.evaluator
        return max(1, min(ev.points_per_call, ev.budget_points) // 2)

    def _function(self):
        if self._compiled is None:
            ev = self.evaluator

            def one(flat):
                with tf.GradientTape() as tape:
                    tape.watch(flat)
                    loss = ev.objective(flat, ev.non_trainable_at())
                grad = tape.gradient(loss, flat, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return loss, grad

            # a loop over the rows: each row's pass is already a whole-data reduction
            def rows(weights):
                return tf.map_fn(one, weights, fn_output_signature=(ev.dtype, ev.dtype))

            self._compiled = tf.function(rows, autograph=False, input_signature=[
                tf.TensorSpec([None, None], ev.dtype)])
        return self._compiled

    def at(self, weights) -> tuple[np.ndarray, np.ndarray]:
        """Loss (P,) and gradient (P, size), float64, at each row of ``weights`` (P, size)."""
        if self.evaluator.centre is None:
            raise RuntimeError("Call set_plane(centre, directions) before gradients (the "
                               "non-trainable values are the centre's).")
        dtype = self.evaluator.dtype.as_numpy_dtype
        weights = np.atleast_2d(np.asarray(weights, dtype=dtype))
        losses = np.empty(len(weights), dtype=np.float64)
        grads = np.empty(weights.shape, dtype=np.float64)
        step = self.points_per_call
        for start in range(0, len(weights), step):
            rows = slice(start, start + step)
            loss, grad = self._function()(tf.constant(weights[rows]))
            losses[rows], grads[rows] = loss.numpy(), grad.numpy()
        self.rows_done += len(weights)
        return losses, grads
