"""Training with a recorded path: the final model is the centre of later slices."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np

from ..config.schema import Config
from ..errors import OutputError
from .sources import DataSpec, ModelSpec
from .trajectory import TrajectoryRecorder


def train(config: Config, out: str | Path, verbose: int = 0) -> dict:
    """Train the configured model on its data, recording the path.

    Writes ``out/trajectory.h5`` and ``out/model.keras`` (the final weights, the default centre).
    Returns a summary dict (paths, final loss, number of checkpoints).
    """
    import keras

    out = Path(out)
    keras.utils.set_random_seed(config.train.seed)  # Keras's shuffling and dropout draw from it
    model = ModelSpec.from_source(config.model.source, config.model.unsafe_deserialization).build()
    datasets = config.data.datasets  # several: training uses the first
    x, y = DataSpec(next(iter(datasets.values())) if datasets else config.data.source).load()
    _set_optimizer(model, config)
    _check_trajectory_size(config, model, len(x), out)
    out.mkdir(parents=True, exist_ok=True)
    recorder = TrajectoryRecorder(out / "trajectory.h5", config.train.record_every, config.train.record_unit)
    history = model.fit(x, y, epochs=config.train.epochs, batch_size=config.train.batch_size,
                        shuffle=True, verbose=verbose, callbacks=[recorder])
    model.save(out / "model.keras")
    final = {k: float(v[-1]) for k, v in history.history.items()}
    with h5py.File(out / "trajectory.h5", "r") as f:
        checkpoints = int(f["weights"].shape[0])
    return {"model": str(out / "model.keras"), "trajectory": str(out / "trajectory.h5"),
            "checkpoints": checkpoints, "final": final, "n_weights": int(
                sum(int(np.prod(v.shape)) for v in model.trainable_variables))}


def _set_optimizer(model, config: Config) -> None:
    """Recompile with the configured optimizer and learning rate, keeping loss and metrics."""
    import keras

    try:
        optimizer = keras.optimizers.get({"class_name": config.train.optimizer,
                                          "config": {"learning_rate": config.train.learning_rate}})
    except ValueError:
        raise ValueError(f"The 'train.optimizer' setting must name a Keras optimizer such as "
                         f"'adam' or 'sgd'. Got {config.train.optimizer!r} instead.") from None
    settings = keras.saving.deserialize_keras_object(model.get_compile_config())
    settings["optimizer"] = optimizer
    model.compile(**settings)


def _check_trajectory_size(config: Config, model, n_examples: int, out: Path) -> None:
    """Refuse a recording that cannot fit on the output's disk (checked before training)."""
    t = config.train
    steps = -(-n_examples // t.batch_size) * t.epochs
    checkpoints = (steps if t.record_unit == "step" else t.epochs) // t.record_every + 2
    size = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    need = checkpoints * size * 4
    existing = next(p for p in (out, *out.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise OutputError(f"The training path would record {checkpoints} checkpoints of {size} "
                          f"weights ({need / 2 ** 30:.3g} GiB), but {free / 2 ** 30:.3g} GiB are free "
                          f"under '{existing}'. Raise train.record_every, lower train.epochs, or "
                          f"give another {{out}}.", out="output directory")
