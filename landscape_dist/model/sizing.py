"""How much an evaluator's compiled call holds: examples per data batch and points per call, from
a memory budget and the activations an inference pass keeps alive."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import activations_per_example

MAX_POINTS_PER_CALL = 1024


def live_activations_per_example(model) -> int:
    """Activation values of one example alive at once in an inference pass, roughly: the
    largest of any layer's inputs and output together, plus the largest output (a residual
    branch held meanwhile); at most the sum of every layer's output (which a deep net's
    inference never holds at once: counting that cut a ResNet50's batches to 3 examples)."""
    total = activations_per_example(model)
    try:
        import keras

        def sizes(tensors) -> int:
            return sum(int(np.prod([d for d in t.shape[1:] if d is not None]))
                       for t in keras.tree.flatten(tensors))

        outputs = [sizes(layer.output) for layer in model.layers]
        widest = max(sizes(layer.input) + out for layer, out in zip(model.layers, outputs))
        return max(16, min(total, widest + max(outputs)))
    except (AttributeError, ValueError, TypeError):
        return total


@dataclass(frozen=True)
class CallSizes:
    """Examples per data batch, points per compiled call and the budget they were sized for.

    ``budget_points`` is what the budget allows where every point of a call is held at once (the
    vectorised method, weight vectors as inputs); ``budget_bytes`` the budget itself."""

    batch_size: int
    points_per_call: int
    budget_points: int
    budget_bytes: float

    @property
    def block(self) -> int:
        """Points per block for XLA and parallel parts: an eighth of the points per call the
        memory budget allows (at most 64), so that a call of any size is padded by less than a
        block and its blocks share out evenly."""
        return max(1, min(64, self.budget_points // 8))


def size_calls(model, n_examples: int, n_weights: int, memory_budget_mb: float,
               batch_size: int | None = None) -> CallSizes:
    """The sizes of a compiled call of ``model`` on ``n_examples`` examples with ``n_weights``
    trainable weights per point, within ``memory_budget_mb``; ``batch_size`` None: the most
    examples the budget allows (at least one)."""
    budget = memory_budget_mb * 2 ** 20
    # activations and ~2 temporaries each, of those alive at once in inference
    act_bytes = 12 * live_activations_per_example(model)
    if batch_size is None:
        batch_size = max(1, min(n_examples, int(budget // (2 * act_bytes))))
    batch_size = int(min(batch_size, n_examples))
    per_point = 8 * n_weights + act_bytes * batch_size
    points = int(max(1, min(MAX_POINTS_PER_CALL, budget // per_point)))
    return CallSizes(batch_size, points, points, budget)
