"""The Keras callbacks that record the training path: to a file as ``train`` does, or in memory
for a model trained by the user's own ``fit`` (see :mod:`.trajectory` for the file)."""

from __future__ import annotations

from pathlib import Path

import h5py
import keras
import numpy as np

from ..core.layout import WeightLayout
from . import optimizers
from .trajectory import OptimizerState, Trajectory, TrainingSetup, write_trajectory

MOMENTS, ITERATIONS = "optimizer_state/second_moments", "optimizer_state/iterations"
# each checkpoint's values, by their place in the file, and how they are stored
_COLUMNS = {"weights": np.float32, "step": np.int64, "epoch": np.int64,
            "learning_rate": np.float64, MOMENTS: np.float32, ITERATIONS: np.int64}


class _Recording(keras.callbacks.Callback):
    """What both recorders share: how often to record (``every`` epochs or steps), the step and
    epoch counters, what a checkpoint holds, and recording each step at most once (the start and
    the end of training always). Subclasses keep each checkpoint (:meth:`_keep`)."""

    def __init__(self, every: int, unit: str, optimizer_state: bool = False):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"The 'every' parameter must be an integer >= 1. Got {every!r} "
                             f"instead.")
        if unit not in ("epoch", "step"):
            raise ValueError(f"The 'unit' parameter must be 'epoch' or 'step'. Got {unit!r} "
                             f"instead.")
        self.every, self.unit, self.optimizer_state = every, unit, bool(optimizer_state)
        self._step = self._epoch = 0
        self._last_step = -1
        self._layout: WeightLayout | None = None
        self._setup: TrainingSetup | None = None
        self._moment_settings: dict = {}

    def _keep(self, row: dict) -> None:
        """Keep checkpoint ``row`` (one value per key of ``_COLUMNS`` recorded)."""
        raise NotImplementedError

    def _amend_epoch(self) -> None:
        """The last checkpoint kept ended an epoch: its epoch becomes ``self._epoch``."""
        raise NotImplementedError

    def _begin(self, batch_size: int | None = None, examples: int | None = None) -> None:
        """At the start of training: the layout, how the model is trained, the state's check."""
        optimizer = self.model.optimizer
        if self.optimizer_state and not optimizers.keeps_second_moments(optimizer):
            raise ValueError(f"The 'optimizer_state' parameter needs an optimizer that keeps "
                             f"second moments ({', '.join(optimizers.SECOND_MOMENTS)}); "
                             f"{optimizers.optimizer_name(optimizer)!r} keeps none. Compile with "
                             f"one of those, or record without the optimizer state.")
        self._layout = WeightLayout.from_variables(self.model.trainable_variables)
        self._setup = TrainingSetup(optimizers.optimizer_name(optimizer),
                                    optimizers.optimizer_config_json(optimizer),
                                    optimizers.initial_rate(optimizer), batch_size, examples,
                                    (self.params or {}).get("steps"))
        if self.optimizer_state:
            self._moment_settings = optimizers.moment_settings(optimizer)

    def _checkpoint(self, flat: np.ndarray) -> dict:
        optimizer = self.model.optimizer
        row = {"weights": flat, "step": self._step, "epoch": self._epoch,
               "learning_rate": optimizers.current_rate(optimizer)}
        if self.optimizer_state:
            row[MOMENTS] = optimizers.second_moments(optimizer, self.model.trainable_variables,
                                                     self._layout)
            row[ITERATIONS] = optimizers.iterations(optimizer)
        return row

    def _record(self) -> None:
        if self._last_step == self._step:
            return
        flat = self._layout.flatten([v.numpy() for v in self.model.trainable_variables])
        self._keep(self._checkpoint(flat))
        self._last_step = self._step

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.unit == "step" and self._step % self.every == 0:
            self._record()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch += 1  # counted, not Keras's index: several fit calls continue one path
        if self._last_step == self._step:
            # recorded at the epoch's last step, before Keras said the epoch ended: the
            # checkpoint's epochs completed are this epoch's, whatever the step count per epoch
            self._amend_epoch()
        elif self.unit == "epoch" and self._epoch % self.every == 0:
            self._record()


class TrajectoryRecorder(_Recording):
    """Keras callback appending the trainable weights to ``path`` every N epochs or steps.

    The file holds ``weights`` (T, size) float32, ``step`` and ``epoch`` (T,) int64 (optimiser
    steps taken and epochs completed at each checkpoint), ``learning_rate`` (T,) float64 (the
    rate in effect there), the layout and how the model is trained (``optimizer``,
    ``optimizer_config``, ``learning_rate``, ``steps_per_epoch``, and ``batch_size`` and
    ``examples`` when given); with ``optimizer_state``, an adaptive optimiser's second moments
    (group ``optimizer_state``). The starting weights are recorded before training and the final
    ones after it. The layout is in the README ("The trajectory file").
    """

    def __init__(self, path: str | Path, every: int = 1, unit: str = "epoch", *,
                 batch_size: int | None = None, examples: int | None = None,
                 optimizer_state: bool = False):
        super().__init__(int(every), unit, optimizer_state)
        self.path = Path(path)
        self.batch_size, self.examples = batch_size, examples
        self._file = None

    def _keep(self, row):
        n = self._file["weights"].shape[0]
        for name, value in row.items():
            self._file[name].resize(n + 1, axis=0)
            self._file[name][n] = value
        self._file.flush()

    def _amend_epoch(self):
        self._file["epoch"][-1] = self._epoch
        self._file.flush()

    def on_train_begin(self, logs=None):
        self._begin(self.batch_size, self.examples)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        size = self._layout.size
        names = [n for n in _COLUMNS if self.optimizer_state or n not in (MOMENTS, ITERATIONS)]
        for name in names:
            wide = name in ("weights", MOMENTS)
            self._file.create_dataset(name, (0, size) if wide else (0,),
                                      maxshape=(None, size) if wide else (None,),
                                      dtype=_COLUMNS[name], chunks=(1, size) if wide else None)
        if self.optimizer_state:
            self._file["optimizer_state"].attrs.update(self._moment_settings)
        self._file.attrs.update(self._layout.to_attrs())
        self._file.attrs["record_every"] = self.every
        self._file.attrs["record_unit"] = self.unit
        self._file.attrs.update(self._setup.to_attrs())
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
    writes (``trajectory.h5``). ``optimizer_state``: also record an adaptive optimiser's second
    moments. :attr:`path` is the recorded :class:`Trajectory`.

    >>> recorder = PathRecorder(every=1)
    >>> model.fit(x, y, epochs=20, callbacks=[recorder])
    >>> landscape(model, (x, y), path=recorder, slices=["pca"])
    """

    def __init__(self, every: int = 1, unit: str = "epoch", file: str | Path | None = None,
                 optimizer_state: bool = False):
        super().__init__(every, unit, optimizer_state)
        self.file = None if file is None else Path(file)
        self._rows: dict[str, list] = {}

    @property
    def layout_(self) -> WeightLayout | None:
        """The layout of the model recorded (None before the first ``fit``)."""
        return self._layout

    @property
    def path(self) -> Trajectory:
        """The recorded path: weights (T, size) float32, step and epoch (T,), the layout, the
        learning rate at each checkpoint, how the first ``fit`` trained (batch size and examples
        unknown: None) and, with ``optimizer_state``, the optimiser's state."""
        if not self._rows:
            raise ValueError("The PathRecorder has recorded nothing yet. Pass it to "
                             "model.fit(..., callbacks=[recorder]) first.")
        rows = {k: np.asarray(v, _COLUMNS[k]) for k, v in self._rows.items()}
        state = (OptimizerState(rows[MOMENTS], rows[ITERATIONS], dict(self._moment_settings))
                 if self.optimizer_state else None)
        return Trajectory(rows["weights"], rows["step"], rows["epoch"], self._layout,
                          rows["learning_rate"], self._setup, state)

    def _keep(self, row):
        for name, value in row.items():
            self._rows.setdefault(name, []).append(value)

    def _amend_epoch(self):
        self._rows["epoch"][-1] = self._epoch

    def on_train_begin(self, logs=None):
        layout = WeightLayout.from_variables(self.model.trainable_variables)
        if self._layout is not None and layout.shapes != self._layout.shapes:
            raise ValueError(f"The PathRecorder recorded another model before "
                             f"({self._layout.mismatch(layout, 'that model', 'this one')}). "
                             f"Give each model its own PathRecorder.")
        setup = self._setup
        self._begin()
        self._setup = setup or self._setup  # how the path began
        self._record()

    def on_train_end(self, logs=None):
        self._record()
        if self.file is not None:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            write_trajectory(self.file, self.path, self.every, self.unit)
