"""Recording the training path: flat weight vectors streamed to an HDF5 file during training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..core.layout import WeightLayout
from ..errors import SourceError


@dataclass(frozen=True)
class Trajectory:
    """A recorded path: weights (T, size), step and epoch (T,), and the layout."""

    weights: np.ndarray
    step: np.ndarray
    epoch: np.ndarray
    layout: WeightLayout


def read_trajectory(path: str | Path) -> Trajectory:
    """Load a trajectory written by :class:`TrajectoryRecorder`."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"The trajectory file '{path}' does not exist. Record one first ({{train}}).",
                          train="train()")
    try:
        with h5py.File(path, "r") as f:
            layout = WeightLayout.from_attrs(f.attrs)
            return Trajectory(f["weights"][...], f["step"][...], f["epoch"][...], layout)
    except (OSError, KeyError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceError(f"The trajectory file '{path}' is not one that training recorded "
                          f"({reason}). Record it again ({{train}}).", train="train()") from None
