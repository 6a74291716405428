"""Training with a recorded path: the final model is the centre of later slices."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..config.rules import must
from ..config.schema import Config
from ..errors import OutputError
from .sources import DataSpec, ModelSpec
from .trajectory import open_hdf5


def run_files(index: int) -> tuple[str, str]:
    """(trajectory, model) file names of training run ``index`` (run 0: the default centre)."""
    return ("trajectory.h5", "model.keras") if index == 0 else (f"trajectory_run{index}.h5",
                                                                  f"model_run{index}.keras")


def train(config: Config, out: str | Path, verbose: int = 0) -> dict:
    """Train the configured model on its data, recording the path; with ``train.runs``, once per
    run (each from the source's own initial weights, with its own settings).

    Writes ``out/trajectory.h5`` and ``out/model.keras`` (the final weights, the default centre),
    and ``trajectory_run<i>.h5``, ``model_run<i>.keras`` for the further runs. Returns a summary
    dict (paths, number of checkpoints; ``final``: the loss and metrics evaluated on the training
    data at the recorded final weights; ``fit_last_epoch``: Keras's own means over the last
    epoch's batches, taken while the weights still moved; ``runs`` for several).
    """
    out = Path(out)
    runs = config.train.run_settings
    optimizers = [_optimizer(settings) for settings in runs]  # every run's, before any trains
    for i, (optimizer, settings) in enumerate(zip(optimizers, runs)):
        _check_optimizer(optimizer, settings, i if config.train.runs else None)
        for name in run_files(i):  # no file replaces a directory: say so before training
            if (out / name).is_dir():
                raise OutputError(f"The training output '{out / name}' is a directory, not a "
                                  f"file. Move it away, or give another {{out}}.",
                                  out="output directory")
    datasets = config.data.datasets  # several: training uses the first
    x, y = DataSpec(next(iter(datasets.values())) if datasets else config.data.source).load()
    summaries = [_train_run(config, settings, optimizer, i, x, y, out, verbose)
                 for i, (optimizer, settings) in enumerate(zip(optimizers, runs))]
    return {**summaries[0], "runs": summaries} if len(summaries) > 1 else summaries[0]


def _train_run(config: Config, settings, optimizer, index: int, x, y, out: Path,
               verbose: int) -> dict:
    import keras

    keras.utils.set_random_seed(settings.seed)  # Keras's shuffling and dropout draw from it
    model = ModelSpec.from_source(config.model.source, config.model.unsafe_deserialization).build()
    _set_optimizer(model, optimizer)
    _check_trajectory_size(settings, model, len(x), out)
    out.mkdir(parents=True, exist_ok=True)
    trajectory, saved = (out / name for name in run_files(index))
    from .recorder import TrajectoryRecorder

    recorder = TrajectoryRecorder(trajectory, settings.record_every, settings.record_unit,
                                  batch_size=settings.batch_size, examples=len(x),
                                  optimizer_state=settings.record_optimizer_state)
    batches = -(-len(x) // settings.batch_size)
    # shuffle=False: the dataset shuffles itself (Keras's own default, shuffle=True, cannot
    # shuffle a tf.data.Dataset and warns that it is ignored)
    history = model.fit(_shuffled_batches(x, y, settings.batch_size, settings.seed),
                        epochs=settings.epochs, steps_per_epoch=batches, verbose=verbose,
                        callbacks=[recorder], shuffle=False)
    model.save(saved)
    # Keras's epoch means are taken while the weights move (the last ends one step before the
    # recorded weights, in training mode): the loss at the recorded weights is evaluated
    final = model.evaluate(x, y, batch_size=settings.batch_size, verbose=0, return_dict=True)
    with open_hdf5(trajectory, "trajectory file", "Record it again ({train}).", train="train()") as f:
        checkpoints = int(f["weights"].shape[0])
    return {"model": str(saved), "trajectory": str(trajectory), "checkpoints": checkpoints,
            "final": {k: float(v) for k, v in final.items()},
            "fit_last_epoch": {k: float(v[-1]) for k, v in history.history.items()},
            "n_weights": int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))}


def _shuffled_batches(x, y, batch_size: int, seed: int):
    """The examples in batches, in a fresh seeded order every epoch (the last batch of an epoch
    may be smaller), repeated without end: with ``steps_per_epoch`` Keras keeps one iterator
    for the whole fit, where arrays cost it a new input pipeline every epoch (3 of the seed
    example's 7.5 s of training)."""
    import tensorflow as tf

    arrays = tf.nest.map_structure(tf.convert_to_tensor, (x, y))
    order = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    # the shuffle buffer holds indices, not a second copy of the examples
    return (order.batch(batch_size)
            .map(lambda rows: tf.nest.map_structure(lambda a: tf.gather(a, rows), arrays))
            .repeat().prefetch(2))


def _optimizer(settings):
    """A fresh Keras optimizer of the run's settings: its optimizer, learning rate and schedule."""
    import keras

    try:
        return keras.optimizers.get({"class_name": settings.optimizer,
                                     "config": {"learning_rate": _learning_rate(settings)}})
    except ValueError:
        raise ValueError(f"The 'train.optimizer' setting must name a Keras optimizer such as "
                         f"'adam' or 'sgd'. Got {settings.optimizer!r} instead.") from None


def _learning_rate(settings):
    """The run's learning rate: a number, or the Keras schedule of ``learning_rate_schedule``
    starting from it."""
    import keras

    schedule, rate = settings.learning_rate_schedule, settings.learning_rate
    if schedule is None:
        return rate
    if schedule.kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(rate, schedule.decay_steps, schedule.alpha)
    return keras.optimizers.schedules.ExponentialDecay(
        rate, schedule.decay_steps, schedule.decay_rate, staircase=schedule.kind == "step")


def _check_optimizer(optimizer, settings, run: int | None) -> None:
    """Refuse recording the second moments of an optimizer that keeps none (before training)."""
    from .optimizers import SECOND_MOMENTS, keeps_second_moments, optimizer_name

    if settings.record_optimizer_state and not keeps_second_moments(optimizer):
        which = f"run {run}'s" if run is not None else "the"
        raise must("train.record_optimizer_state", f"false with {which} optimizer "
                   f"{optimizer_name(optimizer)!r}, which keeps no second moments", True,
                   f"Set train.optimizer to one that does ({', '.join(SECOND_MOMENTS)}) or "
                   f"train.record_optimizer_state to false.")


def _set_optimizer(model, optimizer) -> None:
    """Recompile with ``optimizer``, keeping loss and metrics."""
    import keras

    settings = keras.saving.deserialize_keras_object(model.get_compile_config())
    settings["optimizer"] = optimizer
    model.compile(**settings)


def _check_trajectory_size(t, model, n_examples: int, out: Path) -> None:
    """Refuse a recording that cannot fit on the output's disk (checked before training)."""
    steps = -(-n_examples // t.batch_size) * t.epochs
    checkpoints = (steps if t.record_unit == "step" else t.epochs) // t.record_every + 2
    size = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    need = checkpoints * size * 4 * (2 if t.record_optimizer_state else 1)  # moments: as many
    # the nearest directory that held something before this command (the lock may have made OUT)
    existing = next(p for p in (out, *out.parents)
                    if p.exists() and sorted(os.listdir(p)) != [".landscape-dist.lock"])
    free = shutil.disk_usage(existing).free
    if need > free:
        moments = " and second moments" if t.record_optimizer_state else ""
        raise OutputError(f"The training path would record {checkpoints} checkpoints of {size} "
                          f"weights{moments} ({need / 2 ** 30:.3g} GiB), but "
                          f"{free / 2 ** 30:.3g} GiB are free "
                          f"under '{existing}'. Raise train.record_every, lower train.epochs, or "
                          f"give another {{out}}.", out="output directory")
