"""Recording the training path: flat weight vectors streamed to an HDF5 file during training,
with how the path was trained; and :func:`open_hdf5`, the one way every reader of an HDF5 file
opens it. The file's layout is in the README ("The trajectory file")."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..core.layout import WeightLayout
from ..errors import LandscapeError, SourceError

_H5PY_REASON = re.compile(r"\((.*)\)\s*$")


@dataclass(frozen=True)
class TrainingSetup:
    """How a path was trained: the trajectory file's root attributes of these names. Each is
    None where not recorded (files written before they were, or a ``fit`` of the user's own
    that did not say: ``batch_size`` and ``examples``)."""

    optimizer: str | None = None  # the Keras optimiser's class name ('SGD', 'Adam')
    optimizer_config: str | None = None  # JSON of its get_config(), a schedule serialised in it
    learning_rate: float | None = None  # the rate at step 0
    batch_size: int | None = None
    examples: int | None = None  # training examples
    steps_per_epoch: int | None = None

    def to_attrs(self) -> dict:
        """The attributes to write (the recorded ones only)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_attrs(cls, attrs) -> "TrainingSetup":
        """The setup stored in ``attrs`` (absent ones None)."""
        kinds = {"optimizer": str, "optimizer_config": str, "learning_rate": float,
                 "batch_size": int, "examples": int, "steps_per_epoch": int}
        return cls(**{k: kinds[k](_text(attrs[k]) if kinds[k] is str else attrs[k])
                      for k in kinds if k in attrs})


@dataclass(frozen=True)
class OptimizerState:
    """An adaptive optimiser's state at each checkpoint (the file's ``optimizer_state`` group):
    ``second_moments`` (T, size) float32 in the layout of the weights (zeros before the first
    step), ``iterations`` (T,) int64 its step counter, ``settings`` its ``beta_1``, ``beta_2``,
    ``epsilon`` (``rho`` for RMSprop...) where it has them."""

    second_moments: np.ndarray
    iterations: np.ndarray
    settings: dict


@dataclass(frozen=True)
class Trajectory:
    """A recorded path: weights (T, size), step and epoch (T,) (the optimiser steps and the
    epochs completed at each checkpoint), and the layout; where recorded, the learning rate in
    effect at each checkpoint (T,), how the path was trained, and the optimiser's state."""

    weights: np.ndarray
    step: np.ndarray
    epoch: np.ndarray
    layout: WeightLayout
    learning_rate: np.ndarray | None = None
    setup: TrainingSetup | None = None
    optimizer_state: OptimizerState | None = None


def write_trajectory(path: str | Path, trajectory: Trajectory, every: int = 1,
                     unit: str = "epoch") -> Path:
    """Write ``trajectory`` to ``path`` in the format :class:`TrajectoryRecorder` streams
    (``weights`` (T, size) float32, ``step`` and ``epoch`` (T,) int64, the layout and the
    recording's ``record_every`` and ``record_unit``; ``learning_rate`` (T,) float64, the
    setup's attributes and the ``optimizer_state`` group where the trajectory has them);
    returns ``path``."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("weights", data=np.asarray(trajectory.weights, np.float32))
        f.create_dataset("step", data=np.asarray(trajectory.step, np.int64))
        f.create_dataset("epoch", data=np.asarray(trajectory.epoch, np.int64))
        f.attrs.update(trajectory.layout.to_attrs())
        f.attrs["record_every"] = int(every)
        f.attrs["record_unit"] = unit
        if trajectory.learning_rate is not None:
            f.create_dataset("learning_rate", data=np.asarray(trajectory.learning_rate, np.float64))
        if trajectory.setup is not None:
            f.attrs.update(trajectory.setup.to_attrs())
        state = trajectory.optimizer_state
        if state is not None:
            group = f.create_group("optimizer_state")
            group.create_dataset("second_moments",
                                 data=np.asarray(state.second_moments, np.float32))
            group.create_dataset("iterations", data=np.asarray(state.iterations, np.int64))
            group.attrs.update(state.settings)
    return path


def hdf5_reason(err: BaseException) -> str:
    """h5py's own reason for a failure, without its wrapping ('truncated file: eof = ...' of
    'Unable to synchronously open file (truncated file: eof = ...)')."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    found = _H5PY_REASON.search(first)
    return found.group(1) if found else first


@contextlib.contextmanager
def open_hdf5(path: str | Path, what: str, fix: str, error: type[LandscapeError] = SourceError,
              **words: str):
    """Yield ``path`` open for reading as an ``h5py.File``; a file that cannot be read, then or
    while the block reads it, raises ``error`` in one line naming it: "does not exist", "is a
    directory", "is open for writing" (another process holds its lock) or "is damaged or not
    an HDF5 file (<h5py's reason>)", each followed by ``fix``.

    ``what`` names the file in the first two ('surface file'); ``fix`` and ``what`` may hold
    ``{slots}`` filled from ``words``, as in :class:`~landscape_dist.errors.LandscapeError`.
    The block's own :class:`LandscapeError` passes unchanged.
    """
    path = Path(path)
    if path.is_dir():
        raise error(f"The {what} '{path}' is a directory, not a file. {fix}", words)
    if not path.exists():
        raise error(f"The {what} '{path}' does not exist. {fix}", words)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        if "unable to lock file" in str(err).lower():
            raise error(f"The {what} '{path}' is open for writing in another process. Wait "
                        f"for it to end.", words) from None
        raise _damaged(path, err, fix, error, words) from None
    try:
        with f:
            yield f
    except LandscapeError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as err:  # h5py's kinds for bad bytes
        raise _damaged(path, err, fix, error, words) from None


def _damaged(path: Path, err: BaseException, fix: str, error, words) -> LandscapeError:
    return error(f"The file '{path}' is damaged or not an HDF5 file ({hdf5_reason(err)}). {fix}",
                 words)


def check_recorded_shape(path: Path, name: str, shape: tuple, want: tuple) -> None:
    """Refuse an array ``name`` of the trajectory file ``path`` whose shape is not ``want``, that
    of the file's checkpoints (and weights): a file written by other code, or cut short."""
    if tuple(shape) != tuple(want):
        raise SourceError(f"The trajectory file '{path}' holds '{name}' of shape {tuple(shape)}, "
                          f"but its {want[0]} checkpoints need {tuple(want)}. Record it again "
                          f"({{train}}).", train="train()")


def read_trajectory(path: str | Path, optimizer_state: bool = False) -> Trajectory:
    """Load a trajectory written by :class:`TrajectoryRecorder` or :func:`write_trajectory`.

    ``learning_rate`` and ``setup`` are None in files recorded without them; the optimiser's
    state (as large as the weights) is read only when ``optimizer_state`` is true, and is None
    where the file holds none.
    """
    with open_hdf5(path, "trajectory file", "Record it again ({train}).", SourceError,
                   train="train()") as f:
        if "weights" not in f or "layout_names" not in f.attrs:
            raise SourceError(f"The file '{path}' is not a trajectory file (it holds no recorded "
                              f"weights). Record one ({{train}}).", train="train()")
        layout = WeightLayout.from_attrs(f.attrs)
        setup = TrainingSetup.from_attrs(f.attrs)
        rows, size = f["weights"].shape[0], layout.size
        check_recorded_shape(path, "weights", f["weights"].shape, (rows, size))
        for name in ("step", "epoch", "learning_rate"):
            if name in f:
                check_recorded_shape(path, name, f[name].shape, (rows,))
        rates = f["learning_rate"][...] if "learning_rate" in f else None
        state = None
        if optimizer_state and "optimizer_state" in f:
            group = f["optimizer_state"]
            check_recorded_shape(path, "optimizer_state/second_moments",
                                 group["second_moments"].shape, (rows, size))
            check_recorded_shape(path, "optimizer_state/iterations", group["iterations"].shape,
                                 (rows,))
            state = OptimizerState(group["second_moments"][...], group["iterations"][...],
                                   {k: float(v) for k, v in group.attrs.items()})
        return Trajectory(f["weights"][...], f["step"][...], f["epoch"][...], layout, rates,
                          None if setup == TrainingSetup() else setup, state)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
