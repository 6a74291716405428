"""Labels of a model with several outputs: one array per output, as a dict or a list.

A model with one output takes one label array; a model with several takes a dict keyed by output
name or a list in output order. These helpers treat the three alike.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def map_labels(fn: Callable, y):
    """``fn`` applied to every label array of ``y``, keeping its structure (a tuple becomes a list)."""
    if isinstance(y, dict):
        return {key: fn(value) for key, value in y.items()}
    if isinstance(y, (list, tuple)):
        return [fn(value) for value in y]
    return fn(y)


def label_arrays(y) -> list:
    """The label arrays of ``y`` in order (dict: insertion order)."""
    if isinstance(y, dict):
        return list(y.values())
    if isinstance(y, (list, tuple)):
        return list(y)
    return [y]


def label_count(y) -> int:
    """Examples in ``y``; ValueError when its arrays disagree."""
    counts = {len(a) for a in label_arrays(y)}
    if len(counts) != 1:
        raise ValueError(f"The label arrays must all have one row per example. Got lengths "
                         f"{sorted(counts)}.")
    return counts.pop()


def arrange_labels(y, output_names: list[str]):
    """``y`` for a model with ``output_names``: a list in output order for several outputs (from a
    dict keyed by output name, or a list), the array itself for one.

    Raises ValueError naming the outputs when ``y`` does not match them.
    """
    if len(output_names) <= 1:
        if isinstance(y, dict) and len(y) == 1:
            return np.asarray(next(iter(y.values())))
        if isinstance(y, (list, tuple)) and len(y) == 1:
            return np.asarray(y[0])
        if isinstance(y, (dict, list, tuple)):
            raise ValueError(f"gives {len(y)} label arrays, but the model has one output")
        return np.asarray(y)
    if isinstance(y, dict):
        if set(y) != set(output_names):
            raise ValueError(f"gives labels for {sorted(y)}, but the model's outputs are "
                             f"{list(output_names)}")
        return [np.asarray(y[name]) for name in output_names]
    if isinstance(y, (list, tuple)) and len(y) == len(output_names):
        return [np.asarray(a) for a in y]
    got = f"{len(y)} label arrays" if isinstance(y, (list, tuple)) else "one label array"
    raise ValueError(f"gives {got}, but the model has {len(output_names)} outputs "
                     f"{list(output_names)}")
