"""The Keras callback that records the training path (see :mod:`.trajectory` for the file)."""

from __future__ import annotations

from pathlib import Path

import h5py
import keras

from ..core.layout import WeightLayout


class TrajectoryRecorder(keras.callbacks.Callback):
    """Keras callback appending the trainable weights to ``path`` every N epochs or steps.

    The file holds ``weights`` (T, size) float32, ``step`` and ``epoch`` (T,) and the layout. The
    starting weights are recorded before training and the final ones after it.
    """

    def __init__(self, path: str | Path, every: int = 1, unit: str = "epoch"):
        super().__init__()
        if unit not in ("epoch", "step"):
            raise ValueError(f"The 'unit' parameter must be 'epoch' or 'step'. Got {unit!r} instead.")
        self.path = Path(path)
        self.every = int(every)
        self.unit = unit
        self._file = None
        self._step = 0
        self._epoch = 0
        self._last_step = -1

    def _record(self):
        if self._last_step == self._step:
            return
        flat = self._layout.flatten([v.numpy() for v in self.model.trainable_variables])
        n = self._file["weights"].shape[0]
        for name, value in (("weights", flat), ("step", self._step), ("epoch", self._epoch)):
            self._file[name].resize(n + 1, axis=0)
            self._file[name][n] = value
        self._file.flush()
        self._last_step = self._step

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

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.unit == "step" and self._step % self.every == 0:
            self._record()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch + 1
        if self.unit == "epoch" and self._epoch % self.every == 0:
            self._record()

    def on_train_end(self, logs=None):
        self._record()
        self._file.close()
        self._file = None
