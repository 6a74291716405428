"""The reference method (set the weights, call Keras's ``evaluate``) and model facts for benchmarks.

Slow by design: it checks the fast evaluator and is the benchmark's baseline.
"""

from __future__ import annotations

import numpy as np

from ..core.layout import WeightLayout


def evaluate_per_point(model, x, y, layout: WeightLayout, weights, batch_size: int | None = None,
                       non_trainable=None) -> dict[str, np.ndarray]:
    """Reference method: for each row of ``weights`` (P, size) set the model's weights and call
    ``model.evaluate``. Slow; used to check the fast path and as the benchmark's baseline.
    The model's own weights are restored afterwards."""
    saved = [v.numpy() for v in model.variables]
    if non_trainable is not None:
        for var, value in zip(model.non_trainable_variables, non_trainable):
            var.assign(value)
    results: dict[str, list] = {}
    try:
        for row in np.atleast_2d(weights):
            for var, value in zip(model.trainable_variables, layout.unflatten(row)):
                var.assign(value)
            out = model.evaluate(x, y, batch_size=batch_size or len(x), verbose=0, return_dict=True)
            for name, value in out.items():
                results.setdefault(name, []).append(float(value))
    finally:
        for var, value in zip(model.variables, saved):
            var.assign(value)
    return {name: np.array(values) for name, values in results.items()}


def points_to_weights(centre, directions, coords) -> np.ndarray:
    """``centre + coords @ directions`` for coords (P, k): full weight vectors (P, size) float32."""
    coords = np.atleast_2d(np.asarray(coords, dtype=np.float64))
    return (np.asarray(centre, np.float64) + coords @ np.asarray(directions, np.float64)).astype(np.float32)


def flops_per_example(model) -> float:
    """Floating-point operations of the Dense/Conv layers for one example's forward pass
    (2 x multiply-adds of each kernel at each output position)."""
    total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        out_shape = layer.output.shape[1:]
        positions = int(np.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
        total += 2 * positions * int(np.prod(kernel.shape))
    return float(total)
