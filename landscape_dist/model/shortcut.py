"""The first-layer shortcut: a Sequential model's first Dense/conv pre-activations, computed once
per plane, so that a grid point costs their weighted sum instead of the layer."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import tensorflow as tf

from ..core.layout import WeightLayout

_LINEAR_FIRST_LAYERS = ("Dense", "Conv1D", "Conv2D", "Conv3D")


class FirstLayerShortcut:
    """Pre-activations of a Sequential model's first layer, computed once per plane.

    A Dense or convolution layer's pre-activation is linear in its kernel and bias, and its input
    (the data) is the same at every grid point, so at ``centre + sum_k c_k d_k`` it equals
    ``Z_centre + sum_k c_k Z_k``, where each ``Z`` is the layer applied (without activation) to
    the data with the centre's or a direction's part of the kernel and bias. A point then costs
    one weighted sum instead of the first layer's matmul or convolution; the rest of the model
    runs layer by layer with ``stateless_call``. Used only where it applies exactly, where it
    saves work (kernel fan-in > 1 + k) and where the ``1 + k`` pre-activation arrays fit in
    ``budget`` bytes (see :meth:`applies`).
    """

    @staticmethod
    def applies(model, n_examples: int, k: int, budget: float) -> bool:
        if not isinstance(model, keras.Sequential) or len(model.layers) < 2:
            return False
        first = model.layers[0]
        if type(first).__name__ not in _LINEAR_FIRST_LAYERS or first.non_trainable_variables:
            return False
        if any(getattr(first, name, None) is not None for name in (
                "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "quantization_mode", "lora_rank")):
            return False
        if getattr(first, "compute_dtype", "float32") != "float32":
            return False
        # a point costs 1 + k multiply-adds per pre-activation instead of the kernel's fan-in
        fan_in = int(np.prod(first.kernel.shape[:-1]))
        size = int(np.prod([d for d in first.output.shape[1:]]))
        return fan_in > 1 + k and (1 + k) * n_examples * size * 4 <= budget

    def __init__(self, model, layout: WeightLayout, batches, k: int):
        self.k = k
        first = model.layers[0]
        config = dict(first.get_config(), activation="linear", name=f"{first.name}_linear")
        self.linear = type(first).from_config(config)
        self.linear.build(tuple(model.inputs[0].shape))
        self.activation = first.activation
        self.rest = model.layers[1:]
        position = {v.path: i for i, v in enumerate(model.trainable_variables)}

        def slices(layer):  # (offset, size, shape) in the flat vector of each of its variables
            return [(int(layout.offsets[position[v.path]]), int(layout.sizes[position[v.path]]),
                     tuple(v.shape)) for v in layer.trainable_variables]

        self.first_slices = slices(first)
        self.rest_slices = [slices(layer) for layer in self.rest]
        nt_position = {v.path: i for i, v in enumerate(model.non_trainable_variables)}
        self.rest_nt = [[nt_position[v.path] for v in layer.non_trainable_variables]
                        for layer in self.rest]
        # inference mode for the layers whose call takes it (dropout off, batch-norm statistics)
        self.kwargs = [{"training": False} if "training" in inspect.signature(layer.call).parameters
                       else {} for layer in self.rest]
        self.batches = batches
        # per data batch: pre-activations at the centre (1, ...) and for each direction (k, ...)
        self.z = [tf.Variable(tf.zeros((1 + k,) + tuple(self.linear.compute_output_shape(
            tuple(xb.shape)))), trainable=False) for xb, _ in batches]

    def _weights(self, flat, slices):
        return [tf.reshape(flat[o:o + n], shape) for o, n, shape in slices]

    def set_plane(self, centre, directions) -> None:
        """Compute the pre-activations for this plane's centre and directions (once per plane)."""
        vectors = [centre] + list(directions)
        for z, (xb, _) in zip(self.z, self.batches):
            parts = [self.linear.stateless_call(self._weights(tf.constant(v), self.first_slices),
                                                [], xb)[0] for v in vectors]
            z.assign(tf.stack(parts))

    def predict(self, index: int, coords, flat, non_trainable):
        """(y_pred, regularisation losses) of data batch ``index`` at plane coordinates
        ``coords`` (k,) whose full weight vector is ``flat``."""
        z = self.z[index]
        weights = tf.concat([tf.ones([1], coords.dtype), coords], axis=0)
        h = self.activation(tf.tensordot(weights, z, axes=1))
        losses = []
        for layer, slices, nt, kwargs in zip(self.rest, self.rest_slices, self.rest_nt, self.kwargs):
            h, _, layer_losses = layer.stateless_call(
                self._weights(flat, slices), [non_trainable[i] for i in nt], h,
                return_losses=True, **kwargs)
            losses.extend(layer_losses)
        return h, losses
