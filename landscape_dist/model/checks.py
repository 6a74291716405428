"""Checks and facts about a compiled Keras model that the evaluator relies on: its loss, its
compiled metrics, its activation size, and whether given data fits it."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from ..errors import SourceError

DATA = {"data": "data"}  # how the messages name the data; the sweep names its setting


def loss_callable(model):
    """The single loss of a one-output model as ``fn(y_true, y_pred) -> scalar``."""
    loss = model.loss
    if loss is None:
        raise ValueError("The model must be compiled with a loss (model.compile(loss=...)).")
    fn = keras.losses.get(loss)
    if isinstance(fn, keras.losses.Loss):
        return fn
    return lambda y_true, y_pred: tf.reduce_mean(fn(y_true, y_pred))


def raw_loss(model):
    """The single loss of a one-output model in a form that gives one value per example (a
    ``keras.losses.Loss`` or a loss function)."""
    return keras.losses.get(model.loss)


def per_example_loss(fn, y_true, y_pred, dtype) -> tf.Tensor:
    """The loss of each example of a batch, (batch,): ``fn``'s values before its reduction over
    the batch, averaged over any further axes (as the reduction would)."""
    values = fn.call(y_true, y_pred) if isinstance(fn, keras.losses.Loss) else fn(y_true, y_pred)
    values = tf.cast(tf.convert_to_tensor(values), dtype)
    if values.shape.rank is not None and values.shape.rank > 1:
        values = tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)
    return values


def output_names(model) -> list[str]:
    """The names of the model's outputs, in the order it returns them (one name for one output)."""
    outputs = getattr(model, "outputs", None)
    names = list(getattr(model, "output_names", None) or [])
    count = len(keras.tree.flatten(outputs)) if outputs is not None else 1
    if count <= 1:
        return names[:1] or ["output"]
    return names


def predictions(y_pred, names: list[str]) -> list:
    """A model's outputs as a list in output order (from a dict, list or single tensor)."""
    if isinstance(y_pred, dict):
        return [y_pred[name] for name in names]
    if isinstance(y_pred, (list, tuple)):
        return list(y_pred)
    return [y_pred]


@dataclass(frozen=True)
class LossTerm:
    """One compiled loss of a model with several: which output it scores, the loss (a reduced
    ``fn(y_true, y_pred)``), its weight in the total, and the output's name."""

    output: int
    fn: object
    weight: float
    name: str


def loss_terms(model, names: list[str]) -> list[LossTerm]:
    """The per-output losses of a compiled, built model, as Keras's ``evaluate`` weighs them.

    Uses the model's compiled loss (built by a first ``evaluate``): one entry per output loss,
    with the loss weights given to ``compile``.
    """
    compiled = getattr(model, "_compile_loss", None)
    if compiled is None or not getattr(compiled, "built", False):
        raise ValueError("The model's compiled loss is not built; evaluate it once first.")
    terms = []
    for position, (path, fn, weight, name) in enumerate(compiled._flat_losses):
        if name in names:
            index = names.index(name)
        elif path and isinstance(path[-1], int):
            index = path[-1]
        elif path and path[-1] in names:
            index = names.index(path[-1])
        else:
            index = position
        terms.append(LossTerm(index, fn, 1.0 if weight is None else float(weight), name or names[index]))
    return terms


def compile_metrics(model):
    """The model's compiled-metrics container (built), or None when it has no metrics."""
    for metric in model.metrics:
        if metric.name == "compile_metrics" and metric.variables:
            return metric
    return None


def dtype_policies(model) -> list[str]:
    """The dtype policies (``float32``, ``mixed_float16``, ``float64``...) of the layers that hold
    trainable weights, sorted."""
    names = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer._trainable_variables:
            policy = getattr(layer, "dtype_policy", None)
            names.add(getattr(policy, "name", str(policy)))
    return sorted(names)


def activations_per_example(model) -> int:
    """Rough count of activation values one example creates in a forward pass."""
    total = 0
    try:
        for layer in model.layers:
            total += int(np.prod([d for d in layer.output.shape[1:] if d is not None]))
    except (AttributeError, ValueError, TypeError):
        total = 0
    return max(total, 16)


def loss_name(loss) -> str:
    """A readable name of a loss (a string, a Loss object or a function)."""
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(
        loss, "__name__", type(loss).__name__)
    return str(name)


def check_data(model, x: np.ndarray, y) -> None:
    """Refuse data that does not fit the model's input, or labels that do not fit its losses,
    with a one-line message naming the shapes (raises SourceError). ``y``: the label array, or
    for several outputs a list in output order."""
    if x.dtype.kind not in "biuf":
        raise SourceError(f"The {{data}} gives inputs of type {x.dtype}, which are not numbers. "
                          f"Give numeric inputs.", DATA)
    expected = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if expected is not None:
        got = tuple(x.shape[1:])
        if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
            raise SourceError(f"The {{data}} gives inputs of shape {tuple(x.shape)}, "
                              f"but the model takes {(None,) + expected}. Give data "
                              f"whose examples have shape {expected}, or another model.", DATA)
    names = output_names(model)
    shapes = _output_shapes(model, x, names)
    labels = y if isinstance(y, list) else [y]
    losses = model.loss
    if isinstance(losses, dict):
        losses = [losses.get(name) for name in names]
    elif not isinstance(losses, (list, tuple)):
        losses = [losses] * len(names)
    for i, (label, shape, loss) in enumerate(zip(labels, shapes, losses)):
        if loss is not None:
            _check_labels(np.asarray(label), shape, loss_name(loss),
                          names[i] if len(names) > 1 else None)


def _output_shapes(model, x: np.ndarray, names: list[str]) -> list[tuple]:
    """Each output's shape (batch first): from the model's graph where it has one, else from a
    pass over two examples (a ResNet50's took 0.3 s of the first tile)."""
    outputs = getattr(model, "outputs", None)
    if outputs and len(keras.tree.flatten(outputs)) == len(names):
        shapes = [tuple(t.shape) for t in predictions(outputs, names)]
        if all(len(shape) >= 1 and None not in shape[1:] for shape in shapes):
            return shapes
    return [tuple(np.shape(p)) for p in predictions(model(x[:2], training=False), names)]


def _check_labels(y: np.ndarray, shape: tuple, name: str, output: str | None) -> None:
    """``shape``: the output's shape, batch first."""
    of = f" for output {output!r}" if output else ""
    if y.dtype.kind not in "biuf":
        raise SourceError(f"The {{data}} gives labels{of} of type {y.dtype}, which are not numbers. "
                          f"Give numeric labels.", DATA)
    if "sparse" in name:
        if not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
            raise SourceError(f"The {{data}} gives labels{of} of type {y.dtype} for the loss "
                              f"{name!r}, which needs integer class indices. Give integer labels.", DATA)
        classes = shape[-1]
        lo, hi = int(np.min(y)), int(np.max(y))
        if lo < 0 or hi >= classes:
            raise SourceError(f"The {{data}} gives labels{of} from {lo} to {hi}, but the "
                              f"model has {classes} outputs for the loss {name!r}. Give labels in "
                              f"0..{classes - 1}, or a model with more outputs.", DATA)
        return
    want = tuple(shape[1:])
    got = tuple(y.shape[1:])
    if got != want and not (got == () and want == (1,)):
        raise SourceError(f"The {{data}} gives labels{of} of shape {tuple(y.shape)}, but "
                          f"the model's output is {(None,) + want} for the loss {name!r}. Give one "
                          f"label of shape {want} per example, or another model.", DATA)


def check_shardable(model) -> None:
    """Refuse metrics that are not means over examples: those cannot be combined from shards."""
    metrics = compile_metrics(model)
    if metrics is None:
        return
    for metric in metrics.metrics:
        if not isinstance(metric, keras.metrics.Mean):
            raise SourceError(f"The {{shards}} needs metrics that are means over the examples; the "
                              f"model's metric '{metric.name}' ({type(metric).__name__}) is not. "
                              f"Use {{one_shard}} or compile the model without it.",
                              shards="data's sharding", one_shard="one shard")
