"""What a training path records of its Keras optimiser: its name and settings, the rate in effect
at a step, and an adaptive optimiser's second moments in the trajectory's flat weight order."""

from __future__ import annotations

import json

import numpy as np

from ..core.layout import WeightLayout

# Optimisers that keep a per-weight second moment, and the name Keras gives that state (each
# state variable is named '<the weight's path with _ for />_<name>').
SECOND_MOMENTS = {"Adam": "velocity", "AdamW": "velocity", "Nadam": "velocity",
                  "Lamb": "velocity", "RMSprop": "velocity", "Adagrad": "accumulator"}
# The settings that say how the second moments are formed (where the optimiser has them).
MOMENT_SETTINGS = ("beta_1", "beta_2", "epsilon", "rho", "initial_accumulator_value")


def optimizer_name(optimizer) -> str:
    """The Keras class name of ``optimizer`` ('SGD', 'Adam')."""
    return type(optimizer).__name__


def keeps_second_moments(optimizer) -> bool:
    """Whether ``optimizer`` keeps per-weight second moments this module can record."""
    return optimizer_name(optimizer) in SECOND_MOMENTS


def optimizer_config_json(optimizer) -> str:
    """``optimizer.get_config()`` as JSON text (NumPy numbers as plain ones; a learning-rate
    schedule appears serialised as Keras serialises it)."""
    return json.dumps(optimizer.get_config(), sort_keys=True, default=_plain)


def initial_rate(optimizer) -> float:
    """The learning rate at step 0: the constant rate, or the schedule's value at step 0."""
    import keras

    rate = optimizer.get_config().get("learning_rate")
    if rate is None:  # a wrapper (loss scaling) that keeps its inner optimizer's rate
        return current_rate(optimizer)
    if isinstance(rate, dict):  # a serialised schedule
        rate = keras.optimizers.schedules.deserialize(rate)(0)
    return float(keras.ops.convert_to_numpy(rate))


def current_rate(optimizer) -> float:
    """The learning rate the optimiser's next step uses (a schedule at its step counter)."""
    import keras

    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def iterations(optimizer) -> int:
    """The optimiser's step counter."""
    return int(np.asarray(optimizer.iterations))


def moment_settings(optimizer) -> dict[str, float]:
    """The optimiser's settings among :data:`MOMENT_SETTINGS` (``beta_1``, ``beta_2``,
    ``epsilon`` for Adam; ``rho``, ``epsilon`` for RMSprop...), as floats."""
    config = optimizer.get_config()
    return {k: float(config[k]) for k in MOMENT_SETTINGS if config.get(k) is not None}


def second_moments(optimizer, variables, layout: WeightLayout) -> np.ndarray:
    """The second moments of ``variables`` (the model's trainable variables) in the flat order of
    ``layout``: (size,) float32; zeros before the optimiser is built (no step taken yet).

    Raises ValueError for an optimiser without them (see :func:`keeps_second_moments`) or one
    whose state does not cover every variable.
    """
    name = optimizer_name(optimizer)
    if name not in SECOND_MOMENTS:
        raise ValueError(f"The optimizer {name!r} keeps no second moments. Use one of "
                         f"{', '.join(SECOND_MOMENTS)}.")
    if not optimizer.built:
        return np.zeros(layout.size, np.float32)
    state = {v.name: v for v in optimizer.variables}
    suffix = SECOND_MOMENTS[name]
    missing = [v.path for v in variables if f"{_key(v)}_{suffix}" not in state]
    if missing:
        raise ValueError(f"The optimizer {name!r} holds no {suffix} for the weights "
                         f"{', '.join(missing[:3])}. Record the state of the optimizer that "
                         f"trains this model.")
    return layout.flatten([np.asarray(state[f"{_key(v)}_{suffix}"].numpy(), np.float32)
                           for v in variables])


def _key(variable) -> str:
    return variable.path.replace("/", "_")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
