"""What the trajectory file says about how its path was trained: the optimiser and its settings,
the rate at each checkpoint, the batch, the epochs completed at each checkpoint, an adaptive
optimiser's second moments, and the loss at the recorded final weights."""

import json

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from landscape_dist.cli import main
from landscape_dist.commands import train
from landscape_dist.config import config_from_dict
from landscape_dist.config.sections import ScheduleConfig, TrainConfig
from landscape_dist.core.layout import WeightLayout
from landscape_dist.model.examples import parabola_data
from landscape_dist.model.recorder import PathRecorder, TrajectoryRecorder
from landscape_dist.model.training import _learning_rate
from landscape_dist.model.trajectory import (OptimizerState, Trajectory, TrainingSetup,
                                             read_trajectory, write_trajectory)

BASE = {"model": {"source": "parabola"}, "data": {"source": "parabola"}}


def _train(out, **settings):
    return train(config_from_dict({**BASE, "train": settings}), out)


@pytest.fixture(scope="module")
def full_batch(tmp_path_factory):
    """Adam on all 256 examples per step (1 step per epoch), 3 epochs, a checkpoint every step,
    an exponential schedule, the second moments recorded."""
    out = tmp_path_factory.mktemp("full_batch")
    summary = _train(out, epochs=3, batch_size=256, optimizer="adam", learning_rate=0.01,
                     record_every=1, record_unit="step", record_optimizer_state=True,
                     learning_rate_schedule={"kind": "exponential", "decay_steps": 2,
                                             "decay_rate": 0.5})
    return out, summary


@pytest.fixture(scope="module")
def minibatch(tmp_path_factory):
    """SGD with 64 of 256 examples per step (4 steps per epoch), a checkpoint every 2 steps."""
    out = tmp_path_factory.mktemp("minibatch")
    summary = _train(out, epochs=3, batch_size=64, optimizer="sgd", learning_rate=0.05,
                     record_every=2, record_unit="step")
    return out, summary


def _tiny_model(optimizer="sgd", learning_rate=0.1):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.get({"class_name": optimizer,
                                                  "config": {"learning_rate": learning_rate}}),
                  loss="mse", run_eagerly=True)  # a few steps: cheaper than tracing them
    return model


def _tiny_data(n):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 2)).astype("f4"), rng.standard_normal((n, 1)).astype("f4")


# ------------------------------------------------------------------ epochs at each checkpoint

@pytest.mark.parametrize("n, batch, epochs, every, steps, completed", [
    # 1 step per epoch: the checkpoint at step 4 follows 4 epochs
    (4, 4, 12, 4, [0, 4, 8, 12], [0, 4, 8, 12]),
    # 3 steps per epoch (9 examples, batches of 3); the end (step 9) is recorded as well
    (9, 3, 3, 4, [0, 4, 8, 9], [0, 1, 2, 3]),
    # 3 steps per epoch, the last batch short (7 examples: 3 + 3 + 1)
    (7, 3, 4, 2, [0, 2, 4, 6, 8, 10, 12], [0, 0, 1, 2, 2, 3, 4]),
])
def test_step_checkpoints_hold_the_epochs_completed(tmp_path, n, batch, epochs, every, steps,
                                                    completed):
    keras.utils.set_random_seed(0)
    model, (x, y) = _tiny_model(), _tiny_data(n)
    file = tmp_path / "t.h5"
    in_memory = PathRecorder(every, "step")
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0,
              callbacks=[in_memory, TrajectoryRecorder(file, every, "step")])
    for path in (in_memory.path, read_trajectory(file)):
        assert path.step.tolist() == steps and path.epoch.tolist() == completed
        assert path.epoch.dtype == np.int64
        assert path.setup.steps_per_epoch == -(-n // batch)


@pytest.mark.slow  # trains the parabola model (a module fixture)
def test_train_records_epochs_completed_with_several_steps_per_epoch(minibatch):
    out, summary = minibatch
    with h5py.File(out / "trajectory.h5", "r") as f:
        assert f["step"][...].tolist() == [0, 2, 4, 6, 8, 10, 12]
        # 4 steps per epoch: step s ends floor(s / 4) epochs
        assert f["epoch"][...].tolist() == [0, 0, 1, 1, 2, 2, 3]


def test_epoch_checkpoints_are_unchanged(tmp_path):
    model, (x, y) = _tiny_model(), _tiny_data(8)
    recorder = PathRecorder(2, "epoch")
    model.fit(x, y, batch_size=3, epochs=5, verbose=0, callbacks=[recorder])
    assert recorder.path.step.tolist() == [0, 6, 12, 15]
    assert recorder.path.epoch.tolist() == [0, 2, 4, 5]


# ------------------------------------------------------------------ how the run was trained

@pytest.mark.slow  # trains the parabola model (a module fixture)
def test_training_attributes_read_with_plain_h5py(full_batch, minibatch):
    out, _ = full_batch
    with h5py.File(out / "trajectory.h5", "r") as f:
        attrs = dict(f.attrs)
        rates = f["learning_rate"][...]
        assert f["learning_rate"].dtype == np.float64 and f["weights"].dtype == np.float32
    assert attrs["optimizer"] == "Adam"
    config = json.loads(attrs["optimizer_config"])
    assert config["beta_2"] == pytest.approx(0.999)
    assert config["learning_rate"]["class_name"] == "ExponentialDecay"
    assert config["learning_rate"]["config"]["decay_steps"] == 2
    assert attrs["learning_rate"] == pytest.approx(0.01)
    assert (attrs["batch_size"], attrs["examples"], attrs["steps_per_epoch"]) == (256, 256, 1)
    # the rate each checkpoint's next step uses: 0.01 * 0.5 ** (step / 2)
    np.testing.assert_allclose(rates, 0.01 * 0.5 ** (np.arange(4) / 2), rtol=1e-6)

    out, _ = minibatch
    with h5py.File(out / "trajectory.h5", "r") as f:
        assert f.attrs["optimizer"] == "SGD" and "optimizer_state" not in f
        assert (f.attrs["batch_size"], f.attrs["examples"],
                f.attrs["steps_per_epoch"]) == (64, 256, 4)
        np.testing.assert_allclose(f["learning_rate"][...], np.full(7, 0.05), rtol=1e-6)
        assert json.loads(f.attrs["optimizer_config"])["learning_rate"] == pytest.approx(0.05)


@pytest.mark.parametrize("schedule, rate", [
    (None, lambda s: 0.1 + 0 * s),
    ({"kind": "exponential", "decay_steps": 4, "decay_rate": 0.3}, lambda s: 0.1 * 0.3 ** (s / 4)),
    ({"kind": "step", "decay_steps": 4, "decay_rate": 0.3}, lambda s: 0.1 * 0.3 ** (s // 4)),
    ({"kind": "cosine", "decay_steps": 4, "alpha": 0.2},
     lambda s: 0.1 * (0.2 + 0.8 * 0.5 * (1 + np.cos(np.pi * np.minimum(s, 4) / 4)))),
])
def test_learning_rate_at_each_checkpoint_follows_the_schedule(schedule, rate):
    settings = TrainConfig(learning_rate=0.1, learning_rate_schedule=(
        None if schedule is None else ScheduleConfig(**schedule)))
    model, (x, y) = _tiny_model(), _tiny_data(4)
    model.compile(optimizer=keras.optimizers.SGD(_learning_rate(settings)), loss="mse",
                  run_eagerly=True)
    recorder = PathRecorder(1, "step")
    model.fit(x, y, batch_size=2, epochs=3, verbose=0, callbacks=[recorder])
    steps = recorder.path.step
    assert steps.tolist() == list(range(7))
    np.testing.assert_allclose(recorder.path.learning_rate, rate(steps.astype(float)), rtol=1e-6)
    assert recorder.path.setup.learning_rate == pytest.approx(0.1)


# ------------------------------------------------------------------ optimiser state

@pytest.mark.slow  # trains the parabola model (a module fixture)
def test_adam_second_moments_match_the_gradients_at_the_recorded_weights(full_batch):
    out, _ = full_batch
    with h5py.File(out / "trajectory.h5", "r") as f:
        weights = f["weights"][...]
        moments = f["optimizer_state/second_moments"][...]
        iterations = f["optimizer_state/iterations"][...]
        settings = dict(f["optimizer_state"].attrs)
    assert moments.shape == weights.shape and moments.dtype == np.float32
    assert iterations.tolist() == [0, 1, 2, 3]
    assert settings == pytest.approx({"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})
    assert not moments[0].any()  # before any step

    # independent reference: v_k = beta_2 v_(k-1) + (1 - beta_2) g(w_(k-1))^2, one full batch a step
    model = keras.models.load_model(out / "model.keras")
    layout = WeightLayout.from_variables(model.trainable_variables)
    x, y = parabola_data()
    expected = np.zeros(layout.size)
    for k in range(1, 4):
        for v, value in zip(model.trainable_variables, layout.unflatten(weights[k - 1])):
            v.assign(value)
        with tf.GradientTape() as tape:
            loss = keras.losses.MeanSquaredError()(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        g = layout.flatten([g.numpy() for g in grads]).astype(np.float64)
        expected = 0.999 * expected + 0.001 * g ** 2
        np.testing.assert_allclose(moments[k], expected, rtol=2e-3, atol=1e-12)


@pytest.mark.slow  # trains the parabola model (a module fixture)
def test_optimizer_state_read_only_when_asked(full_batch):
    out, _ = full_batch
    assert read_trajectory(out / "trajectory.h5").optimizer_state is None
    state = read_trajectory(out / "trajectory.h5", optimizer_state=True).optimizer_state
    assert state.iterations.tolist() == [0, 1, 2, 3] and state.second_moments.shape == (4, 8513)


def test_recording_the_state_of_sgd_is_refused_before_training(tmp_path):
    expected = ("The 'train.record_optimizer_state' setting must be false with the optimizer "
                "'SGD', which keeps no second moments. Got True instead. Set train.optimizer to "
                "one that does (Adam, AdamW, Nadam, Lamb, RMSprop, Adagrad) or "
                "train.record_optimizer_state to false.")
    with pytest.raises(ValueError) as err:
        _train(tmp_path / "a", optimizer="sgd", record_optimizer_state=True)
    assert str(err.value) == expected
    with pytest.raises(ValueError) as err:  # run 0 is fine: nothing is trained before refusing
        _train(tmp_path / "b", record_optimizer_state=True,
               runs=[{"optimizer": "adam"}, {"optimizer": "sgd"}])
    assert "with run 1's optimizer 'SGD'" in str(err.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_recording_the_state_of_sgd_is_refused_in_one_line_by_the_cli(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "train": {"optimizer": "sgd",
                                                     "record_optimizer_state": True}}))
    code = main(["train", str(cfg), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "'train.record_optimizer_state' setting must be false with the optimizer 'SGD'" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("runs, directory", [((), "trajectory.h5"),
                                             (({"epochs": 1}, {"epochs": 2}), "model_run1.keras")])
def test_a_directory_where_a_training_file_goes_is_refused_before_training(tmp_path, capsys,
                                                                           runs, directory):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "train": {"epochs": 1, "runs": list(runs)}}))
    out = tmp_path / "out"
    (out / directory / "kept").mkdir(parents=True)
    code = main(["train", str(cfg), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"landscape-dist: error: The training output '{out / directory}' "
                                 f"is a directory, not a file. Move it away, or give another "
                                 f"--out."]
    assert sorted(p.name for p in out.iterdir()) == [directory]
    assert (out / directory / "kept").is_dir()


def test_path_recorder_refuses_optimizer_state_of_sgd():
    model, (x, y) = _tiny_model("sgd"), _tiny_data(4)
    with pytest.raises(ValueError, match="^The 'optimizer_state' parameter needs an optimizer "
                                         "that keeps second moments .*; 'SGD' keeps none"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[PathRecorder(optimizer_state=True)])


def test_rmsprop_state_in_memory_is_the_mean_square_of_the_gradients():
    model, (x, y) = _tiny_model("rmsprop", 0.01), _tiny_data(4)
    recorder = PathRecorder(1, "step", optimizer_state=True)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False, callbacks=[recorder])
    path = recorder.path
    state = path.optimizer_state
    assert set(state.settings) == {"rho", "epsilon"} and state.iterations.tolist() == [0, 1]
    probe = _tiny_model()
    for v, value in zip(probe.trainable_variables, path.layout.unflatten(path.weights[0])):
        v.assign(value)
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(y, probe(x))
    g = path.layout.flatten([g.numpy() for g in tape.gradient(loss, probe.trainable_variables)])
    np.testing.assert_allclose(state.second_moments[1], (1 - state.settings["rho"]) * g ** 2,
                               rtol=1e-4)


# ------------------------------------------------------------------ the final loss

@pytest.mark.slow  # trains the parabola model (a module fixture)
def test_final_loss_is_evaluated_at_the_recorded_weights(minibatch):
    out, summary = minibatch
    x, y = parabola_data()
    saved = keras.models.load_model(out / "model.keras")
    evaluated = saved.evaluate(x, y, verbose=0, return_dict=True)
    assert summary["final"] == pytest.approx(evaluated, rel=1e-5)
    # the saved weights are the last recorded ones
    path = read_trajectory(out / "trajectory.h5")
    np.testing.assert_array_equal(
        path.layout.flatten([v.numpy() for v in saved.trainable_variables]), path.weights[-1])
    # Keras's own mean over the last epoch is kept beside it, and differs (weights moved)
    assert set(summary["fit_last_epoch"]) == {"loss"}
    assert summary["fit_last_epoch"]["loss"] != pytest.approx(summary["final"]["loss"], rel=1e-4)


def test_cli_line_says_where_the_final_loss_was_taken():
    from landscape_dist.cli.lines import summary_lines

    result = {"checkpoints": 7, "final": {"loss": 0.25}, "fit_last_epoch": {"loss": 0.3},
              "model": "m.keras", "trajectory": "t.h5"}
    assert summary_lines("train", result, None) == [
        "trained: 7 checkpoints recorded, final loss 0.25 at the recorded weights (Keras's "
        "last-epoch mean 0.3); m.keras, t.h5"]


# ------------------------------------------------------------------ old files and round trips

def test_old_files_without_the_training_record_still_read(tmp_path):
    layout = WeightLayout(("a",), ((2, 3),))
    with h5py.File(tmp_path / "old.h5", "w") as f:  # the format before these were recorded
        f["weights"] = np.arange(12, dtype="f4").reshape(2, 6)
        f["step"] = np.array([0, 5])
        f["epoch"] = np.array([0, 4])
        f.attrs.update(layout.to_attrs())
        f.attrs["record_every"], f.attrs["record_unit"] = 5, "step"
    path = read_trajectory(tmp_path / "old.h5", optimizer_state=True)
    assert path.learning_rate is None and path.setup is None and path.optimizer_state is None
    assert path.epoch.tolist() == [0, 4]


def test_write_and_read_round_trip_everything(tmp_path):
    layout = WeightLayout(("a", "b"), ((2,), (1, 2)))
    setup = TrainingSetup("Adam", '{"beta_1": 0.9}', 0.01, 32, 100, 4)
    state = OptimizerState(np.full((3, 4), 0.5, "f4"), np.array([0, 4, 8]),
                           {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7})
    written = Trajectory(np.ones((3, 4), "f4"), np.array([0, 4, 8]), np.array([0, 1, 2]), layout,
                         np.array([0.01, 0.005, 0.0025]), setup, state)
    read = read_trajectory(write_trajectory(tmp_path / "t.h5", written, 4, "step"),
                           optimizer_state=True)
    assert read.setup == setup and read.optimizer_state.settings == state.settings
    np.testing.assert_array_equal(read.learning_rate, written.learning_rate)
    np.testing.assert_array_equal(read.optimizer_state.second_moments, state.second_moments)
    np.testing.assert_array_equal(read.optimizer_state.iterations, state.iterations)


@pytest.mark.parametrize("name, bad, want", [
    ("learning_rate", np.ones(2), "(3,)"),
    ("epoch", np.zeros(4, np.int64), "(3,)"),
    ("optimizer_state/second_moments", np.ones((3, 3), "f4"), "(3, 4)"),
    ("optimizer_state/iterations", np.zeros(2, np.int64), "(3,)"),
])
def test_a_file_whose_columns_do_not_fit_its_checkpoints_is_refused_in_one_line(tmp_path, name,
                                                                              bad, want):
    # a file cut short while a checkpoint was being appended, or written by other code
    from landscape_dist.errors import SourceError

    state = OptimizerState(np.zeros((3, 4), "f4"), np.arange(3), {"beta_1": 0.9})
    file = write_trajectory(tmp_path / "t.h5", Trajectory(
        np.ones((3, 4), "f4"), np.arange(3), np.arange(3), WeightLayout(("a",), ((4,),)),
        np.full(3, 0.1), None, state))
    with h5py.File(file, "a") as f:
        del f[name]
        f[name] = bad
    with pytest.raises(SourceError) as caught:
        read_trajectory(file, optimizer_state=True)
    assert str(caught.value) == (f"The trajectory file '{file}' holds '{name}' of shape "
                                 f"{bad.shape}, but its 3 checkpoints need {want}. Record it "
                                 f"again (train()).")


# ------------------------------------------------------------------ settings

@pytest.mark.parametrize("train_settings, message", [
    ({"learning_rate_schedule": {"kind": "linear"}},
     "The 'train.learning_rate_schedule.kind' setting must be one of ('exponential', 'step', "
     "'cosine'). Got 'linear' instead."),
    ({"learning_rate_schedule": {"decay_steps": 0}},
     "The 'train.learning_rate_schedule.decay_steps' setting must be an integer >= 1 (optimiser "
     "steps). Got 0 instead."),
    ({"learning_rate_schedule": {"kind": "cosine", "alpha": 1.5}},
     "The 'train.learning_rate_schedule.alpha' setting must be a number from 0 to 1 (a fraction "
     "of the first rate). Got 1.5 instead."),
    ({"record_optimizer_state": "yes"},
     "The 'train.record_optimizer_state' setting must be true or false. Got 'yes' instead."),
    ({"runs": [{"record_optimizer_state": 1}]},
     "The 'train.runs.0.record_optimizer_state' setting must be true or false. Got 1 instead."),
])
def test_bad_training_record_settings_are_named(train_settings, message):
    with pytest.raises(ValueError) as err:
        config_from_dict({**BASE, "train": train_settings})
    assert str(err.value) == message
