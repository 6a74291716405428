"""``sharpness.h5``: the sharpness along each training run, readable with h5py alone; and what a
trajectory file says of how its run was trained (optimiser, learning rates, optimiser state).

Layout (see the README, "Sharpness along training"): root attributes ``summary``, ``settings``,
``config`` and ``versions`` (JSON text); one group per run, ``run<i>``, holding per evaluated
checkpoint ``checkpoint`` (its index in the trajectory), ``step``, ``epoch``, ``eigenvalues``
(n, top_k), ``trace``, ``trace_stderr``, ``gradient_norm``, ``learning_rate``, ``threshold``
(NaN where none applies), ``lanczos_steps``, ``converged`` and ``quantities/<name>`` (the loss
and metrics as Keras evaluates them), with attributes saying which operator (``operator``,
``operator_why``) and which threshold (``threshold_formula``, ``threshold_why``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SourceError
from ..model.trajectory import check_recorded_shape, open_hdf5

_PER_CHECKPOINT = ("checkpoint", "step", "epoch", "eigenvalues", "trace", "trace_stderr",
                   "gradient_norm", "learning_rate", "threshold", "lanczos_steps", "converged")
_RUN_ATTRS = ("trajectory", "optimizer", "operator", "operator_why", "threshold_formula",
              "threshold_why")


@dataclass(frozen=True)
class TrainingRecord:
    """How a recorded run was trained, as far as its trajectory file says: the optimiser's Keras
    class name and ``get_config()`` (None, {} where not recorded), the learning rate at each
    checkpoint (T,) (None where not recorded) and, where the optimiser's state was recorded,
    its ``iterations`` (T,) and ``beta_1``, ``beta_2``, ``epsilon``
    (:meth:`second_moments` reads a checkpoint's second moments)."""

    path: Path
    optimizer: str | None
    settings: dict
    learning_rate: np.ndarray | None
    iterations: np.ndarray | None = None
    betas: tuple[float, float] | None = None
    epsilon: float | None = None

    @property
    def has_state(self) -> bool:
        return self.iterations is not None and self.betas is not None and self.epsilon is not None

    def second_moments(self, indices) -> np.ndarray:
        """The recorded second moments (len(indices), size) float64 at checkpoints ``indices``."""
        with open_hdf5(self.path, "trajectory file", "Record it again ({train}).",
                       train="train()") as f:
            data = f["optimizer_state/second_moments"]
            return np.stack([np.asarray(data[int(i)], np.float64) for i in indices])


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def read_training_record(path: str | Path, checkpoints: int, size: int) -> TrainingRecord:
    """What the trajectory file ``path`` (of ``checkpoints`` checkpoints of ``size`` weights)
    records of its training; a file from before these were recorded gives None where they would
    be. Raises SourceError where a recorded array does not match the checkpoints and weights."""
    path = Path(path)
    with open_hdf5(path, "trajectory file", "Record it again ({train}).", train="train()") as f:
        attrs = f.attrs
        optimizer = _text(attrs.get("optimizer"))
        try:
            settings = json.loads(_text(attrs.get("optimizer_config", "{}")))
        except ValueError:
            raise SourceError(f"The trajectory file '{path}' holds an 'optimizer_config' that is "
                              f"not JSON. Record it again ({{train}}).", train="train()") from None
        rates = None
        if "learning_rate" in f:
            rates = np.asarray(f["learning_rate"][...], np.float64)
        elif "learning_rate" in attrs:  # a constant rate
            rates = np.full(checkpoints, float(attrs["learning_rate"]))
        if rates is not None:
            check_recorded_shape(path, "learning_rate", rates.shape, (checkpoints,))
        state = f.get("optimizer_state")
        if state is None or "second_moments" not in state or "iterations" not in state:
            return TrainingRecord(path, optimizer, settings if isinstance(settings, dict) else {},
                                  rates)
        check_recorded_shape(path, "optimizer_state/second_moments", state["second_moments"].shape,
                     (checkpoints, size))
        check_recorded_shape(path, "optimizer_state/iterations", state["iterations"].shape,
                     (checkpoints,))
        a = state.attrs
        betas = (float(a["beta_1"]), float(a["beta_2"])) if "beta_1" in a and "beta_2" in a \
            else None
        return TrainingRecord(path, optimizer, settings if isinstance(settings, dict) else {},
                              rates, np.asarray(state["iterations"][...], np.int64), betas,
                              float(a["epsilon"]) if "epsilon" in a else None)


def write_sharpness(path: Path, runs: dict[str, dict], meta: dict) -> None:
    """``sharpness.h5`` (see the module docstring): ``runs`` maps a group name to its arrays
    (:data:`_PER_CHECKPOINT`, ``quantities`` a dict of arrays) and attributes
    (:data:`_RUN_ATTRS`); ``meta`` the root attributes. Written whole (a temporary file renamed
    into place)."""
    import h5py

    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        for key, value in meta.items():
            f.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
        for name, run in runs.items():
            g = f.create_group(name)
            for key in _PER_CHECKPOINT:
                g[key] = np.asarray(run[key])
            q = g.create_group("quantities")
            for key, values in run["quantities"].items():
                q[key] = np.asarray(values, np.float64)
            for key in _RUN_ATTRS:
                g.attrs[key] = "" if run.get(key) is None else str(run[key])
    os.replace(tmp, path)


def read_sharpness(path: str | Path) -> dict:
    """A ``sharpness.h5`` back as {run group name: {array name: array, ``quantities``: {...},
    attribute name: text}}, the root's ``summary`` under the key ``""``."""
    import h5py

    out = {}
    with open_hdf5(path, "sharpness file", "Compute it again ({sharpness}).",
                   sharpness="sharpness()") as f:
        out[""] = json.loads(_text(f.attrs.get("summary", "{}")))
        for name, g in f.items():
            run = {key: g[key][...] for key in _PER_CHECKPOINT}
            run["quantities"] = {}
            g["quantities"].visititems(  # names of several datasets' quantities hold a '/'
                lambda key, v: run["quantities"].__setitem__(key, v[...])
                if isinstance(v, h5py.Dataset) else None)
            run.update({key: _text(g.attrs.get(key, "")) for key in _RUN_ATTRS})
            out[name] = run
    return out
