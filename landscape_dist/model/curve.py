"""Training the bend of a curve between two models (Garipov et al. 2018, "Loss Surfaces, Mode
Connectivity, and Fast Ensembling of DNNs").

The curve ``phi(t)`` joins A (t = 0) and B (t = 1) through a bend ``theta`` (see
:func:`~landscape_dist.core.curves.bend_coefficients`); training minimises ``E_t L(phi(t))`` over
``theta`` alone, one ``t ~ U(0, 1)`` drawn per batch, from ``theta = (A + B) / 2``, the model in
training mode (batch normalisation on each batch's own statistics).

The bend is saved after every epoch, whole, in a small HDF5 file (:func:`write_bend`): the bend's
flat weights, the optimiser's state, the loss of each epoch, and the digest of everything that
decides the bend but the number of epochs. Epoch ``e`` shuffles and draws its ``t`` from a
generator seeded with ``(seed, e)``, so training that stops after any epoch and is resumed from
the file gives the bend an uninterrupted run would have given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from ..core.curves import BENDS, bend_coefficients
from ..core.layout import WeightLayout
from ..errors import LandscapeError
from .trajectory import open_hdf5

log = logging.getLogger("landscape_dist")

BEND_FORMAT = "landscape_dist.bend"


@dataclass(frozen=True)
class BendTraining:
    """How a bend is trained: the curve's shape, epochs (passes over the data), batch size,
    the Keras optimizer by name and its learning rate, and the seed of the shuffling and of
    the ``t`` drawn per batch."""

    bend: str
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    seed: int

    def __post_init__(self):
        if self.bend not in BENDS:
            raise ValueError(f"The 'bend' parameter must be one of {BENDS}. Got {self.bend!r} "
                             f"instead.")

    def deciding(self) -> dict:
        """The settings that decide the bend, all but the number of epochs (more epochs go on
        from fewer)."""
        return {k: v for k, v in asdict(self).items() if k != "epochs"}


def bend_key(training: BendTraining, a: np.ndarray, b: np.ndarray, x, y, model_id: str) -> str:
    """The digest of what decides a bend: the settings (:meth:`BendTraining.deciding`), the
    end models' weights, the training data and the model (``model_id``)."""
    h = hashlib.sha256(json.dumps(training.deciding(), sort_keys=True).encode())
    h.update(model_id.encode())
    for array in (a, b, x, *(y.values() if isinstance(y, dict) else
                             y if isinstance(y, (list, tuple)) else [y])):
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


@dataclass
class SavedBend:
    """A bend file's contents: the bend (size,), the epochs done, the digest it was trained
    for, its settings, the mean training loss of each epoch, the optimiser's variables."""

    theta: np.ndarray
    epochs_done: int
    key: str
    training: dict
    history: np.ndarray
    optimizer: list


def write_bend(path: Path, saved: SavedBend) -> None:
    """Write ``saved`` to ``path`` whole (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = BEND_FORMAT
        f.attrs["key"] = saved.key
        f.attrs["training"] = json.dumps(saved.training)
        f.attrs["epochs_done"] = int(saved.epochs_done)
        f.create_dataset("theta", data=np.asarray(saved.theta))
        f.create_dataset("history", data=np.asarray(saved.history, np.float64))
        opt = f.create_group("optimizer")
        for i, value in enumerate(saved.optimizer):
            opt.create_dataset(str(i), data=np.asarray(value))
    os.replace(tmp, path)


def read_bend(path: Path) -> SavedBend | None:
    """The bend saved at ``path``, or None where there is no file; a damaged file or one that
    is not a bend file is refused in one line."""
    path = Path(path)
    if path.is_dir():  # the user's directory: never offered for deletion
        raise LandscapeError(f"The bend file '{path}' is a directory, not a file. Give the "
                             f"{{bend_file}} the path of a file, such as '{path / 'bend.h5'}'.",
                             bend_file="'bend_file' parameter")
    if not path.exists():
        return None
    with open_hdf5(path, "bend file", "Give the {bend_file} another path, or delete the file to "
                   "train the bend again.", bend_file="'bend_file' parameter") as f:
        if f.attrs.get("format") != BEND_FORMAT:
            raise LandscapeError(f"The file '{path}' is not a bend file written by this tool. "
                                 f"Give the {{bend_file}} another path.",
                                 bend_file="'bend_file' parameter")
        opt = f["optimizer"]
        return SavedBend(f["theta"][...], int(f.attrs["epochs_done"]), str(f.attrs["key"]),
                         json.loads(f.attrs["training"]), f["history"][...],
                         [opt[str(i)][...] for i in range(len(opt))])


def refuse_unwritable(path: Path) -> None:
    """Refuse a bend file that cannot be written (tried for real, its folder made), before any
    epoch is spent on a bend that could not be saved."""
    tmp = path.with_name(path.name + ".new")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.touch()
        tmp.unlink()
    except OSError as err:
        raise LandscapeError(f"The bend file '{path}' cannot be written ("
                             f"{err.strerror or type(err).__name__}). Give the {{bend_file}} a "
                             f"path in a writable folder.",
                             bend_file="'bend_file' parameter") from None


def make_optimizer(name: str, learning_rate: float):
    """The Keras optimizer ``name`` with ``learning_rate``."""
    import keras

    try:
        return keras.optimizers.get({"class_name": name,
                                     "config": {"learning_rate": learning_rate}})
    except ValueError:
        raise LandscapeError(f"The {{optimizer}} must name a Keras optimizer such as 'adam' or "
                             f"'sgd'. Got {name!r} instead.",
                             optimizer="'optimizer' parameter") from None


def epoch_plan(seed: int, epoch: int, n: int, batch_size: int, bend: str):
    """Epoch ``epoch``'s batches: the example indices of each batch and the curve's
    coefficients at the ``t`` drawn for it, ``(list of (rows,) arrays, (batches, 3))``."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return batches, bend_coefficients(bend, rng.uniform(0.0, 1.0, len(batches)))


class _Step:
    """One compiled training step of the bend: the loss at the curve's point for the given
    coefficients on one batch, and the optimiser's update of the bend."""

    def __init__(self, model, a, b, theta, optimizer):
        import tensorflow as tf

        from .checks import output_names
        from .loss import BatchLoss

        self.model, self.theta, self.optimizer = model, theta, optimizer
        self.layout = WeightLayout.from_variables(model.trainable_variables)
        dtype = tf.as_dtype(model.trainable_variables[0].dtype)
        self.a, self.b = tf.constant(a, dtype), tf.constant(b, dtype)
        self.loss = BatchLoss(model, output_names(model), dtype)
        # the layers' state in training mode (batch-norm moving statistics, dropout seeds),
        # carried from step to step; never the model's own variables
        self.state = [tf.Variable(v.numpy(), trainable=False)
                      for v in model.non_trainable_variables]
        self.run = tf.function(self._step, reduce_retracing=True, autograph=False)

    def _step(self, coefficients, xb, yb):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            flat = (coefficients[0] * self.a + coefficients[1] * self.theta.value
                    + coefficients[2] * self.b)
            weights = [tf.reshape(p, s) for p, s in
                       zip(tf.split(flat, self.layout.sizes), self.layout.shapes)]
            y_pred, state, losses = self.model.stateless_call(
                weights, [v.value() for v in self.state], xb, training=True, return_losses=True)
            data, _ = self.loss.data(yb, y_pred)
            value = self.loss.total(data, self.loss.regularization(losses))
        self.optimizer.apply([tape.gradient(value, self.theta.value)], [self.theta])
        for variable, new in zip(self.state, state):
            variable.assign(new)
        return value


def train_bend(model, a: np.ndarray, b: np.ndarray, x, y, training: BendTraining, path: Path,
               key: str, progress: bool = True) -> tuple[np.ndarray, dict]:
    """The bend of the curve from A (``a``, flat weights (size,)) to B (``b``) trained on
    ``(x, y)``, saved in ``path`` after every epoch; returns it (size,), in the model's weight
    dtype, and what was done.

    A file at ``path`` trained for the same ``key`` (:func:`bend_key`) is reused when it has the
    epochs asked for, and training resumes from its last epoch when it has fewer (the same bend
    as an uninterrupted run); a file of other settings, or with more epochs than asked, is
    replaced by a bend trained from the start. The result's ``status`` says which:
    ``reused``, ``resumed``, ``trained`` or ``restarted``.
    """
    import keras

    from ..core.labels import arrange_labels
    from .checks import output_names

    path = Path(path)
    saved = read_bend(path)
    status = _status(saved, key, training.epochs, path)
    if status == "reused":
        return saved.theta, _info(path, "reused", saved, 0, 0.0)
    refuse_unwritable(path)
    if status == "resumed":
        start, theta0, state, history = (saved.epochs_done, saved.theta, saved.optimizer,
                                         list(saved.history))
    else:
        start, theta0, state, history = 0, 0.5 * (a + b), None, []
    dtype = np.dtype(model.trainable_variables[0].dtype)  # float64 models train in float64
    theta = keras.Variable(np.asarray(theta0, dtype), name="bend")
    optimizer = make_optimizer(training.optimizer, training.learning_rate)
    optimizer.build([theta])
    for variable, value in zip(optimizer.variables, state or []):
        variable.assign(value)
    step = _Step(model, np.asarray(a, dtype), np.asarray(b, dtype), theta, optimizer)
    y = arrange_labels(y, output_names(model))
    t0 = time.perf_counter()
    steps = 0
    bar = _bar(training, len(x), start, progress, path)
    try:
        for epoch in range(start, training.epochs):
            loss, done = _train_epoch(step, training, epoch, x, y, bar)
            history.append(loss)
            steps += done
            now = SavedBend(np.asarray(theta.numpy()), epoch + 1, key,
                            asdict(training), np.asarray(history),
                            [np.asarray(v.numpy()) for v in optimizer.variables])
            write_bend(path, now)  # after every epoch: an interrupted run resumes from here
            _show_epoch(bar, path, epoch + 1, training.epochs, loss)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    log.info("bend %s: %s, %d epochs (%d steps) in %.1f s, mean loss along the curve %.5g",
             path, status, training.epochs - start, steps, seconds, history[-1])
    return now.theta, _info(path, status, now, steps, seconds, start)


def _train_epoch(step: _Step, training: BendTraining, epoch: int, x, y,
                 bar) -> tuple[float, int]:
    """One epoch of the bend's training on ``(x, y)`` (``y`` arranged by output): the mean loss
    along the curve over its batches, and the optimiser steps taken (one per batch)."""
    import tensorflow as tf

    from ..core.labels import map_labels

    batches, coefficients = epoch_plan(training.seed, epoch, len(x), training.batch_size,
                                       training.bend)
    total, steps = 0.0, 0
    for rows, c in zip(batches, coefficients):
        value = step.run(tf.constant(c, step.a.dtype), tf.constant(x[rows]),
                         map_labels(lambda arr: tf.constant(arr[rows]), y))
        total += float(value) * len(rows)
        steps += 1
        if bar is not None:
            bar.update(1)
    return total / len(x), steps


def _show_epoch(bar, path: Path, done: int, epochs: int, loss: float) -> None:
    """An epoch's mean loss on the progress bar, or where there is none a log line."""
    if bar is not None:
        bar.set_postfix(loss=f"{loss:.4g}")
    else:  # no terminal to draw a bar on (a log file, a Ray worker): a line per epoch
        log.info("bend %s: epoch %d of %d, mean loss along the curve %.5g", path.name,
                 done, epochs, loss)


def _status(saved: SavedBend | None, key: str, epochs: int, path: Path) -> str:
    """What becomes of the bend file's contents ``saved`` for a training of ``epochs`` epochs
    with digest ``key``: ``reused``, ``resumed``, ``trained`` (no file) or ``restarted``."""
    if saved is None:
        return "trained"
    if saved.key == key and saved.epochs_done == epochs:
        log.info("bend %s: reused (%d epochs, mean loss along the curve %.5g)", path,
                 saved.epochs_done, saved.history[-1] if len(saved.history) else np.nan)
        return "reused"
    if saved.key == key and saved.epochs_done < epochs:
        log.info("bend %s: resuming after epoch %d of %d", path, saved.epochs_done, epochs)
        return "resumed"
    why = ("was trained for other settings, end models or data" if saved.key != key else
           f"has {saved.epochs_done} epochs, more than the {epochs} asked for")
    log.warning("bend %s %s: training it again from the start", path, why)
    return "restarted"


def _bar(training: BendTraining, n: int, start: int, progress: bool, path: Path):
    """A tqdm bar over the steps still to run; None without ``progress`` or a terminal."""
    import sys

    if not progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    per_epoch = -(-n // training.batch_size)
    return tqdm(total=per_epoch * training.epochs, initial=per_epoch * start,
                desc=f"bend {path.name}", unit="step", file=sys.stderr, dynamic_ncols=True)


def _info(path: Path, status: str, saved: SavedBend, steps: int, seconds: float,
          start: int | None = None) -> dict:
    """What training the bend did, for the plane's metadata and the summary."""
    info = {"file": str(path), "status": status, "epochs": int(saved.epochs_done),
            "steps_run": int(steps), "seconds": round(seconds, 3),
            "final_loss": float(saved.history[-1]) if len(saved.history) else None}
    if status == "resumed":
        info["resumed_at_epoch"] = int(start)
    return info
