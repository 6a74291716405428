"""Recording the training path: flat weight vectors streamed to an HDF5 file during training;
and :func:`open_hdf5`, the one way every reader of an HDF5 file opens it."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..core.layout import WeightLayout
from ..errors import LandscapeError, SourceError

_H5PY_REASON = re.compile(r"\((.*)\)\s*$")


@dataclass(frozen=True)
class Trajectory:
    """A recorded path: weights (T, size), step and epoch (T,), and the layout."""

    weights: np.ndarray
    step: np.ndarray
    epoch: np.ndarray
    layout: WeightLayout


def write_trajectory(path: str | Path, trajectory: Trajectory, every: int = 1,
                     unit: str = "epoch") -> Path:
    """Write ``trajectory`` to ``path`` in the format :class:`TrajectoryRecorder` streams
    (``weights`` (T, size) float32, ``step`` and ``epoch`` (T,) int64, the layout and the
    recording's ``record_every`` and ``record_unit``); returns ``path``."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("weights", data=np.asarray(trajectory.weights, np.float32))
        f.create_dataset("step", data=np.asarray(trajectory.step, np.int64))
        f.create_dataset("epoch", data=np.asarray(trajectory.epoch, np.int64))
        f.attrs.update(trajectory.layout.to_attrs())
        f.attrs["record_every"] = int(every)
        f.attrs["record_unit"] = unit
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


def read_trajectory(path: str | Path) -> Trajectory:
    """Load a trajectory written by :class:`TrajectoryRecorder`."""
    with open_hdf5(path, "trajectory file", "Record it again ({train}).", SourceError,
                   train="train()") as f:
        if "weights" not in f or "layout_names" not in f.attrs:
            raise SourceError(f"The file '{path}' is not a trajectory file (it holds no recorded "
                              f"weights). Record one ({{train}}).", train="train()")
        layout = WeightLayout.from_attrs(f.attrs)
        return Trajectory(f["weights"][...], f["step"][...], f["epoch"][...], layout)
