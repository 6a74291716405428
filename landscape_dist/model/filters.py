"""Which axes of each weight tensor index its filters, decided from the layer that owns it.

Li et al. normalise each *filter* of a random direction: the weights that produce one output unit
or map. Their PyTorch code takes dimension 0 of every weight; in Keras layouts the output axes sit
elsewhere and depend on the layer:

=============================================  ========================  ==========================
layer                                          tensor                    one filter is
=============================================  ========================  ==========================
Dense, Conv1D/2D/3D (also grouped)             kernel ``(..., in, out)`` each index of the last axis
Conv1D/2D/3DTranspose                          kernel ``(..., out, in)`` each index of axis -2
DepthwiseConv1D/2D                             kernel ``(..., C, mult)`` each (channel, multiplier)
SeparableConv1D/2D                             depthwise kernel          as DepthwiseConv
SeparableConv1D/2D                             pointwise kernel          each index of the last axis
Embedding                                      embeddings ``(V, dim)``   each row (one token)
EinsumDense (MultiHeadAttention projections)   kernel                    each index of the kernel's
                                                                         axes that the output keeps
LSTM / GRU / SimpleRNN cells                   kernel, recurrent kernel  each index of the last axis
=============================================  ========================  ==========================

Biases (of any shape) and tensors with at most one dimension (normalisation parameters) are one
piece, and are what ``ignore: biasbn`` zeroes. A kernel of
any other layer gets the last-axis rule and one :class:`FilterRuleWarning` naming the tensors.
The owner of a variable is the innermost layer that created it (a Dense inside a custom layer
inside a nested Sequential is a Dense).
"""

from __future__ import annotations

import warnings

import keras

from ..core.directions import FilterRule
from ..errors import FilterRuleWarning  # noqa: F401 - defined where it unpickles without Keras


_LAST = "each index of the last axis"


def _einsum_axes(equation: str, ndim: int) -> tuple[int, ...] | None:
    """The kernel axes an EinsumDense output keeps, from its equation ('abc,cde->abde': (1, 2))."""
    try:
        inputs, output = equation.replace(" ", "").split("->")
        _, kernel = inputs.split(",")
    except ValueError:
        return None
    if "." in kernel or len(kernel) != ndim:
        return None
    axes = tuple(i for i, letter in enumerate(kernel) if letter in output)
    return axes or None


def rule_for(layer, name: str, ndim: int) -> FilterRule | None:
    """The rule for variable ``name`` (its short name, e.g. 'kernel') of ``ndim`` dimensions
    owned by ``layer``; None when the layer type is not known."""
    L = keras.layers
    kind = type(layer).__name__
    if name == "bias" or ndim <= 1:  # biases (EinsumDense's have several axes), norm parameters
        return FilterRule((), f"{kind} {name}: whole tensor", bias=True)
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)) and name == "kernel":
        return FilterRule((ndim - 2, ndim - 1), f"{kind} kernel: each (channel, multiplier)")
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        if name == "depthwise_kernel":
            return FilterRule((ndim - 2, ndim - 1), f"{kind} depthwise kernel: each (channel, multiplier)")
        if name == "pointwise_kernel":
            return FilterRule((ndim - 1,), f"{kind} pointwise kernel: {_LAST}")
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)) and name == "kernel":
        return FilterRule((ndim - 2,), f"{kind} kernel: each index of axis -2")
    if isinstance(layer, L.Embedding) and name == "embeddings":
        return FilterRule((0,), f"{kind} embeddings: each row")
    if isinstance(layer, L.EinsumDense) and name == "kernel":
        axes = _einsum_axes(layer.equation, ndim)
        if axes is not None:
            return FilterRule(axes, f"{kind} kernel ({layer.equation}): each index of axes "
                                    f"{list(axes)}")
    if isinstance(layer, (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D)) and name == "kernel":
        return FilterRule((ndim - 1,), f"{kind} kernel: {_LAST}")
    if isinstance(layer, (L.LSTMCell, L.GRUCell, L.SimpleRNNCell)) and name in ("kernel",
                                                                              "recurrent_kernel"):
        return FilterRule((ndim - 1,), f"{kind} {name.replace('_', ' ')}: {_LAST}")
    return None


def _owners(model) -> dict:
    """variable path -> the innermost layer that created it."""
    owners = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        prefix = getattr(layer, "path", None)
        for var in layer._trainable_variables:
            path = var.path
            # a wrapper that keeps another layer's variable as an attribute also lists it: the
            # creator is the layer whose path the variable's path extends
            created = prefix is not None and path.startswith(f"{prefix}/")
            if created or path not in owners:
                owners[path] = layer
    return owners


def filter_rules(model, warn: bool = True) -> tuple[FilterRule, ...]:
    """One :class:`FilterRule` per trainable variable of ``model``, in ``trainable_variables``
    order. Kernels of unknown layer types get the last-axis rule (and, with ``warn``, one
    :class:`FilterRuleWarning` naming them)."""
    owners = _owners(model)
    rules, unknown = [], []
    for var in model.trainable_variables:
        ndim = len(var.shape)
        layer = owners.get(var.path)
        name = var.path.rsplit("/", 1)[-1]
        rule = rule_for(layer, name, ndim) if layer is not None else None
        if rule is None:
            kind = type(layer).__name__ if layer is not None else "unknown layer"
            rule = FilterRule.last_axis(ndim, f"{kind} {name}: {_LAST} (layer type not known)")
            unknown.append(var.path)
        rules.append(rule)
    if unknown and warn:
        warnings.warn(f"Filter normalisation does not know the layers of {', '.join(unknown)}; "
                      f"their filters are taken along the last axis.", FilterRuleWarning,
                      stacklevel=2)
    return tuple(rules)
