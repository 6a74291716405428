"""The Keras callbacks that record the training path: to a file as ``train`` does, or in memory
for a model trained by the user's own ``fit`` (see :mod:`.trajectory` for the file)."""

from __future__ import annotations

from pathlib import Path

import h5py
import keras
import numpy as np

from ..core.layout import WeightLayout
from .trajectory import Trajectory, write_trajectory


class _Recording(keras.callbacks.Callback):
    """What both recorders share: how often to record (``every`` epochs or steps), the step and
    epoch counters, and recording each step at most once (the start and the end of training
    always). Subclasses keep each recorded weight vector (:meth:`_keep`)."""

    def __init__(self, every: int, unit: str):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"The 'every' parameter must be an integer >= 1. Got {every!r} "
                             f"instead.")
        if unit not in ("epoch", "step"):
            raise ValueError(f"The 'unit' parameter must be 'epoch' or 'step'. Got {unit!r} "
                             f"instead.")
        self.every, self.unit = every, unit
        self._step = self._epoch = 0
        self._last_step = -1
        self._layout: WeightLayout | None = None

    def _keep(self, flat: np.ndarray) -> None:
        """Keep the weights ``flat`` (size,) recorded at ``self._step`` / ``self._epoch``."""
        raise NotImplementedError

    def _record(self) -> None:
        if self._last_step == self._step:
            return
        self._keep(self._layout.flatten([v.numpy() for v in self.model.trainable_variables]))
        self._last_step = self._step

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.unit == "step" and self._step % self.every == 0:
            self._record()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch += 1  # counted, not Keras's index: several fit calls continue one path
        if self.unit == "epoch" and self._epoch % self.every == 0:
            self._record()


class TrajectoryRecorder(_Recording):
    """Keras callback appending the trainable weights to ``path`` every N epochs or steps.

    The file holds ``weights`` (T, size) float32, ``step`` and ``epoch`` (T,) and the layout. The
    starting weights are recorded before training and the final ones after it.
    """

    def __init__(self, path: str | Path, every: int = 1, unit: str = "epoch"):
        super().__init__(int(every), unit)
        self.path = Path(path)
        self._file = None

    def _keep(self, flat):
        n = self._file["weights"].shape[0]
        for name, value in (("weights", flat), ("step", self._step), ("epoch", self._epoch)):
            self._file[name].resize(n + 1, axis=0)
            self._file[name][n] = value
        self._file.flush()

    def on_train_begin(self, logs=None):
        self._layout = WeightLayout.from_variables(self.model.trainable_variables)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        size = self._layout.size
        self._file.create_dataset("weights", (0, size), maxshape=(None, size), dtype="f4",
                                  chunks=(1, size))
        self._file.create_dataset("step", (0,), maxshape=(None,), dtype="i8")
        self._file.create_dataset("epoch", (0,), maxshape=(None,), dtype="i8")
        self._file.attrs.update(self._layout.to_attrs())
        self._file.attrs["record_every"] = self.every
        self._file.attrs["record_unit"] = self.unit
        self._record()

    def on_train_end(self, logs=None):
        self._record()
        self._file.close()
        self._file = None


class PathRecorder(_Recording):
    """Keras callback that records the training path in memory, for ``landscape(path=...)``.

    ``every`` and ``unit`` (``"epoch"`` or ``"step"``) say how often the trainable weights are
    recorded; the start and the end of each ``fit`` always are. Several ``fit`` calls continue
    one path. ``file``: also write the path there when ``fit`` ends, in the format ``train``
    writes (``trajectory.h5``). :attr:`path` is the recorded :class:`Trajectory`.

    >>> recorder = PathRecorder(every=1)
    >>> model.fit(x, y, epochs=20, callbacks=[recorder])
    >>> landscape(model, (x, y), path=recorder, slices=["pca"])
    """

    def __init__(self, every: int = 1, unit: str = "epoch", file: str | Path | None = None):
        super().__init__(every, unit)
        self.file = None if file is None else Path(file)
        self._weights: list[np.ndarray] = []
        self._steps: list[int] = []
        self._epochs: list[int] = []

    @property
    def layout_(self) -> WeightLayout | None:
        """The layout of the model recorded (None before the first ``fit``)."""
        return self._layout

    @property
    def path(self) -> Trajectory:
        """The recorded path: weights (T, size) float32, step and epoch (T,) and the layout."""
        if not self._weights:
            raise ValueError("The PathRecorder has recorded nothing yet. Pass it to "
                             "model.fit(..., callbacks=[recorder]) first.")
        return Trajectory(np.stack(self._weights), np.asarray(self._steps, np.int64),
                          np.asarray(self._epochs, np.int64), self._layout)

    def _keep(self, flat):
        self._weights.append(flat)
        self._steps.append(self._step)
        self._epochs.append(self._epoch)

    def on_train_begin(self, logs=None):
        layout = WeightLayout.from_variables(self.model.trainable_variables)
        if self._layout is not None and layout.shapes != self._layout.shapes:
            raise ValueError(f"The PathRecorder recorded another model before "
                             f"({self._layout.mismatch(layout, 'that model', 'this one')}). "
                             f"Give each model its own PathRecorder.")
        self._layout = layout
        self._record()

    def on_train_end(self, logs=None):
        self._record()
        if self.file is not None:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            write_trajectory(self.file, self.path, self.every, self.unit)
