"""Checks and facts about a compiled Keras model that the evaluator relies on: its loss, its
compiled metrics, its activation size, and whether given data fits it."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ..errors import SourceError

DATA = {"data": "data"}  # how the messages name the data; the sweep names its setting


def loss_callable(model):
    loss = model.loss
    if loss is None:
        raise ValueError("The model must be compiled with a loss (model.compile(loss=...)).")
    if isinstance(loss, (list, tuple, dict)):
        raise ValueError("The model must have a single loss; models with several outputs or "
                         "losses are not supported yet.")
    fn = keras.losses.get(loss)
    if isinstance(fn, keras.losses.Loss):
        return fn
    return lambda y_true, y_pred: tf.reduce_mean(fn(y_true, y_pred))


def compile_metrics(model):
    """The model's compiled-metrics container (built), or None when it has no metrics."""
    for metric in model.metrics:
        if metric.name == "compile_metrics" and metric.variables:
            return metric
    return None


def activations_per_example(model) -> int:
    """Rough count of activation values one example creates in a forward pass."""
    total = 0
    try:
        for layer in model.layers:
            total += int(np.prod([d for d in layer.output.shape[1:] if d is not None]))
    except (AttributeError, ValueError, TypeError):
        total = 0
    return max(total, 16)


def loss_name(model) -> str:
    loss = model.loss
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(
        loss, "__name__", type(loss).__name__)
    return str(name)


def check_data(model, x: np.ndarray, y: np.ndarray) -> None:
    """Refuse data that does not fit the model's input, or labels that do not fit its loss,
    with a one-line message naming the shapes (raises ValueError)."""
    expected = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if expected is not None:
        got = tuple(x.shape[1:])
        if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
            raise SourceError(f"The {{data}} gives inputs of shape {tuple(x.shape)}, "
                              f"but the model takes {(None,) + expected}. Give data "
                              f"whose examples have shape {expected}, or another model.", DATA)
    y_pred = np.asarray(model(x[:2], training=False))
    name = loss_name(model)
    if "sparse" in name:
        if not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
            raise SourceError(f"The {{data}} gives labels of type {y.dtype} for the loss "
                              f"{name!r}, which needs integer class indices. Give integer labels.", DATA)
        classes = y_pred.shape[-1]
        lo, hi = int(np.min(y)), int(np.max(y))
        if lo < 0 or hi >= classes:
            raise SourceError(f"The {{data}} gives labels from {lo} to {hi}, but the "
                              f"model has {classes} outputs for the loss {name!r}. Give labels in "
                              f"0..{classes - 1}, or a model with more outputs.", DATA)
        return
    want = tuple(y_pred.shape[1:])
    got = tuple(y.shape[1:])
    if got != want and not (got == () and want == (1,)):
        raise SourceError(f"The {{data}} gives labels of shape {tuple(y.shape)}, but "
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
