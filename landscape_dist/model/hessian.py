"""Hessian-vector products of the grid's loss on a worker.

The product is forward-over-reverse automatic differentiation (a forward-mode derivative of the
gradient) of :meth:`LandscapeEvaluator.objective`: the loss the grid shows, data loss over the
worker's whole dataset plus regularisation, batch-norm statistics as in the slice. Many products
are computed in one compiled call, each at its own weights and with its own vector, so a tile's
Lanczos runs advance together. Shards combine exactly: a shard's product is that of its mean data
loss plus the regularisation, and the size-weighted mean of those is the product of the whole.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import tensorflow as tf

from ..errors import SourceError
from .strategy import unavailable_reason

log = logging.getLogger(__name__)

_METHODS = ("loop", "vectorized")


def refuse_recomputed_statistics(evaluator, what: str) -> None:
    """Refuse derivatives (``what``: "Hessian products", "Gradients") on an evaluator whose
    batch-norm statistics are re-estimated at each point: those are not differentiated through."""
    if evaluator.recompute is not None:
        raise SourceError(f"{what} need the batch-norm statistics of the slice as given "
                          f"(batchnorm: centre or interpolate); re-estimated statistics "
                          f"(batchnorm: recompute) are not differentiated through.")


class HessianProducts:
    """``products(weights, vectors)``: H(w_p) v_p for rows p of (P, size) arrays, on an evaluator's
    model and data. ``mode`` as the evaluator's: ``auto`` times a compiled loop over the rows and
    a vectorised one on the first call and keeps the faster (:attr:`method`, :attr:`timings`)."""

    def __init__(self, evaluator, mode: str = "auto"):
        refuse_recomputed_statistics(evaluator, "Hessian products")
        self.evaluator = evaluator
        self.mode = mode
        self.method = None if mode == "auto" else ("loop" if mode == "loop" else "vectorized")
        self.timings: dict[str, float] = {}
        self._compiled: dict = {}
        self.products_done = 0

    @property
    def points_per_call(self) -> int:
        """Products per compiled call: a forward-over-reverse pass holds about three times the
        activations of a loss evaluation."""
        ev = self.evaluator
        return max(1, min(ev.points_per_call, ev.budget_points) // 3)

    def _product(self, flat, vector, coords):
        ev = self.evaluator
        non_trainable = ev.non_trainable_at(coords)
        with tf.autodiff.ForwardAccumulator(flat, vector) as acc:
            with tf.GradientTape() as tape:
                tape.watch(flat)
                loss = ev.objective(flat, non_trainable)
            grad = tape.gradient(loss, flat)
        return acc.jvp(grad, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def _function(self, method: str, k: int):
        key = (method, k)
        if key not in self._compiled:
            def one(args):
                flat, vector, coords = args
                return self._product(flat, vector, coords if k else None)

            if method == "loop":
                body = lambda w, v, c: tf.map_fn(one, (w, v, c),  # noqa: E731
                                                 fn_output_signature=self.evaluator.dtype)
            else:
                body = lambda w, v, c: tf.vectorized_map(one, (w, v, c),  # noqa: E731
                                                         fallback_to_while_loop=True)
            dtype = self.evaluator.dtype
            self._compiled[key] = tf.function(body, autograph=False, input_signature=[
                tf.TensorSpec([None, None], dtype), tf.TensorSpec([None, None], dtype),
                tf.TensorSpec([None, max(k, 1)], dtype)])
        return self._compiled[key]

    def _call(self, method, weights, vectors, coords):
        return self._function(method, 0 if coords is None else coords.shape[1])(
            weights, vectors, coords if coords is not None else tf.zeros((len(weights), 1),
                                                                         weights.dtype)).numpy()

    def _choose(self, weights, vectors, coords) -> np.ndarray:
        """Time each method on this first call (after compiling it) and keep the faster; the
        call's products are the kept method's, as every later call's are (the methods round
        differently)."""
        outs = {}
        for method in _METHODS:
            try:
                self._call(method, weights, vectors, coords)
                t0 = time.perf_counter()
                outs[method] = self._call(method, weights, vectors, coords)
                self.timings[method] = time.perf_counter() - t0
            except (ValueError, TypeError, NotImplementedError, tf.errors.OpError) as err:
                log.info("Hessian products: the %s method is unavailable (%s)", method,
                         unavailable_reason(err))
        if not self.timings:
            raise RuntimeError("No method of computing Hessian-vector products works for this model.")
        self.method = min(self.timings, key=self.timings.get)
        log.info("Hessian products: %s method chosen (%s)", self.method,
                 ", ".join(f"{m} {t * 1e3:.1f} ms" for m, t in self.timings.items()))
        return outs[self.method]

    def products(self, weights, vectors, coords=None) -> np.ndarray:
        """H(w_p) v_p for every row p: weights and vectors (P, size), ``coords`` (P, k) the rows'
        plane coordinates where the non-trainable values move with the plane (else None).
        Returns (P, size) in float64."""
        dtype = self.evaluator.dtype.as_numpy_dtype
        weights = np.asarray(weights, dtype=dtype)
        vectors = np.asarray(vectors, dtype=dtype)
        out = np.empty(vectors.shape, dtype=np.float64)
        step = self.points_per_call
        for start in range(0, len(vectors), step):
            rows = slice(start, start + step)
            args = (tf.constant(weights[rows]), tf.constant(vectors[rows]),
                    None if coords is None else tf.constant(np.asarray(coords[rows], dtype)))
            if self.method is None:
                out[rows] = self._choose(*args)
            else:
                out[rows] = self._call(self.method, *args)
        self.products_done += len(vectors)
        return out

    def at_centre(self, vectors) -> np.ndarray:
        """H(centre) v for each row of ``vectors`` (m, size), at the current plane's centre."""
        centre = self.evaluator.centre
        if centre is None:
            raise RuntimeError("Call set_plane(centre, directions) before Hessian products.")
        vectors = np.atleast_2d(vectors)
        centre = np.broadcast_to(centre, vectors.shape)
        return self.products(centre, vectors)
