"""The non-trainable values (batch-norm statistics) at the points of a plane."""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf


def hold(values, held):
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
def calibrating(model):
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


class PlaneStatistics:
    """A model's non-trainable values at the points of a plane, held in variables.

    The centre's values (the model's own until :meth:`hold` is given others), moved along their
    directions where the plane carries them (:attr:`directions`: k lists, one array per
    non-trainable variable), or re-estimated at every point on the first :attr:`recompute`
    examples (:meth:`reestimate`).
    """

    def __init__(self, model):
        self.values = hold([v.numpy() for v in model.non_trainable_variables], None)[0]
        self.directions = None  # their directions, when they move with the plane
        self.recompute = None  # examples the statistics are re-estimated on, per point
        self._calibration = None

    def set_recompute(self, recompute: int | None, inputs) -> bool:
        """Re-estimate on the first ``recompute`` of ``inputs`` (a list of input batches), or
        not (None); returns whether that changed."""
        if recompute == self.recompute:
            return False
        self.recompute = recompute
        self._calibration = None if recompute is None else tf.constant(
            np.concatenate([xb.numpy() for xb in inputs])[:recompute])
        return True

    def hold(self, values, directions) -> bool:
        """Hold the centre's ``values`` (None keeps those held) and their ``directions`` (None:
        the centre's values at every point); returns whether new variables were made (compiled
        functions reading the old ones must be rebuilt)."""
        fresh = False
        if values is not None:
            self.values, fresh = hold(values, self.values)
        if directions is None:
            fresh |= self.directions is not None
            self.directions = None
            return fresh
        old = self.directions if self.directions and len(self.directions) == len(
            directions) else [None] * len(directions)
        held = [hold([np.asarray(v, nt.dtype.as_numpy_dtype) for v, nt in zip(d, self.values)],
                     before)
                for d, before in zip(directions, old)]
        fresh |= self.directions is None or any(new for _, new in held)
        self.directions = [variables for variables, _ in held]
        return fresh

    def at(self, coords=None) -> list:
        """The values at plane coordinates ``coords`` (k,): the centre's, moved along their
        directions where the plane carries them."""
        if coords is None or self.directions is None:
            return self.values
        return [nt + tf.add_n([tf.cast(coords[j], nt.dtype) * d[i]
                               for j, d in enumerate(self.directions)])
                for i, nt in enumerate(self.values)]

    def reestimate(self, model, weights, non_trainable) -> list:
        """The values re-estimated at ``weights`` (the model's shaped trainable weights) by one
        pass over the calibration examples in training mode, dropout off; ``non_trainable``
        unchanged where nothing is re-estimated."""
        if self.recompute is None:
            return non_trainable
        with calibrating(model):
            _, non_trainable = model.stateless_call(weights, non_trainable, self._calibration,
                                                    training=True)
        return non_trainable
