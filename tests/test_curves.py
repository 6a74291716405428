"""Curves between minima (kind: curve): the curve's ends are the models' own evaluate, the line
is evaluate at interpolated weights, a trained bend lowers the barrier of two minima trained
from different seeds, the bend is reused and resumed as said, bad settings are one line, and
Ray gives what the process gives."""

import numpy as np
import pytest

from landscape_dist.config import ConfigError, config_from_dict
from landscape_dist.core.curves import barrier, bend_coefficients, curve_coordinates
from landscape_dist.core.layout import WeightLayout
from landscape_dist.core.projection import project_path
from landscape_dist.model.sources import ModelSpec
from landscape_dist.store.surface import read_surface

MODEL, TRAIN, TEST = ("tests.test_curves:curve_model", "tests.test_curves:curve_train",
                      "tests.test_curves:curve_test")


def _xor(seed, n):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return x, (x[:, 0] * x[:, 1] > 0).astype(np.int32)


def curve_model():
    """2-8-2 tanh classifier (42 weights), cross-entropy on logits, accuracy."""
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(2)])
    model.compile(optimizer="adam", metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def curve_train():
    return _xor(0, 128)


def curve_test():
    return _xor(1, 64)


def _minimum(seed, folder):
    """The model trained full-batch (Adam, 150 steps) from the initial weights of ``seed``,
    saved; its file."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = curve_model()
    x, y = curve_train()
    optimizer = keras.optimizers.Adam(0.05)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = model.loss(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)

    for _ in range(150):
        step()
    path = folder / f"min{seed}.keras"
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def minima(tmp_path_factory):
    folder = tmp_path_factory.mktemp("minima")
    return [_minimum(seed, folder) for seed in (1, 2)]


def _settings(minima, directions=None, data=None, **more):
    return {"model": {"source": MODEL}, "data": {"source": data or {"train": TRAIN, "test": TEST}},
            "train": {"epochs": 30, "batch_size": 32, "learning_rate": 0.01},
            "grid": {"x": {"min": -0.5, "max": 1.5, "points": 4},
                     "y": {"min": -0.5, "max": 1.5, "points": 3}},
            "slices": [{"name": "c", "directions": {"kind": "curve", "models": minima, "points": 11,
                                                    **(directions or {})}}], **more}


def _weights(path):
    model = ModelSpec.from_source(path).build()
    layout = WeightLayout.from_variables(model.trainable_variables)
    return layout.flatten([v.numpy() for v in model.trainable_variables]), layout


_FRESH = []  # one fresh model, built once, for every evaluate


def _evaluate_at(flat, layout, x, y):
    """Keras's own evaluate at flat weights, by a fresh model."""
    if not _FRESH:
        _FRESH.append(curve_model())
    model = _FRESH[0]
    for variable, value in zip(model.trainable_variables, layout.unflatten(flat)):
        variable.assign(value)
    return model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)


@pytest.fixture(scope="module")
def swept(minima, tmp_path_factory):
    from landscape_dist.commands import sweep

    out = tmp_path_factory.mktemp("curve")
    summary = sweep(config_from_dict(_settings(minima)), out, in_process=True, progress=False)
    return out, summary, read_surface(out / "surface.h5")["c"]


@pytest.mark.slow
def test_ends_and_line_are_keras_evaluate_and_the_curve_lies_in_its_plane(minima, swept):
    out, _, surface = swept
    curve, line = surface.curves["curve"], surface.curves["line"]
    np.testing.assert_array_equal(curve.t, np.linspace(0, 1, 11))
    (a, layout), (b, _) = _weights(minima[0]), _weights(minima[1])
    for dataset, (x, y) in (("train", curve_train()), ("test", curve_test())):
        for t, flat in ((0, a), (-1, b)):  # the curve's ends are the models themselves
            own = _evaluate_at(flat, layout, x, y)
            for name in ("loss", "accuracy"):
                np.testing.assert_allclose(curve.values[f"{dataset}/{name}"][t], own[name],
                                           rtol=1e-5)
        for i in (3, 5, 8):  # the straight line: evaluate at the interpolated weights
            t = line.t[i]
            own = _evaluate_at((1 - t) * a + t * b, layout, x, y)
            np.testing.assert_allclose(line.values[f"{dataset}/loss"][i], own["loss"], rtol=1e-5)
            np.testing.assert_allclose(line.values[f"{dataset}/accuracy"][i], own["accuracy"])
    # the bend saved beside the surface: its curve projects onto the plane with no residual, at
    # the stored coordinates, and its weights give the stored values
    import h5py

    with h5py.File(surface.meta["bend_training"]["file"]) as f:
        theta = f["theta"][...].astype(np.float64)
    phi = bend_coefficients("bezier", curve.t) @ np.stack([a, theta, b])
    coords, residual, _ = project_path(phi, surface.centre, surface.directions)
    assert np.max(residual) < 1e-5 * np.linalg.norm(b - a)
    np.testing.assert_allclose(coords, curve.coords, atol=1e-5)
    np.testing.assert_allclose(curve.coords, curve_coordinates("bezier", curve.t,
                                                               surface.meta["bend_coords"]))
    x, y = curve_train()
    mid = _evaluate_at(phi[5], layout, x, y)
    np.testing.assert_allclose(curve.values["train/loss"][5], mid["loss"], rtol=1e-5)


@pytest.mark.slow
def test_the_trained_curve_lowers_the_barrier_of_the_line(swept):
    out, summary, surface = swept
    info = summary["slices"]["c"]
    line = barrier(surface.curves["line"].values["train/loss"])
    curve = barrier(surface.curves["curve"].values["train/loss"])
    assert line > 0.5 and curve < 0.5 * line  # two minima with a barrier between them
    assert info["barrier"] == {"curve": pytest.approx(curve), "line": pytest.approx(line)}
    assert info["barriers"]["test/loss"]["line"] == pytest.approx(
        barrier(surface.curves["line"].values["test/loss"]))
    assert surface.meta["barriers"]["train/loss"]["curve"] == pytest.approx(curve)
    assert info["bend_training"]["status"] == "trained" and info["bend_training"]["epochs"] == 30
    from landscape_dist.cli.lines import sweep_lines

    assert (f"    barrier on train/loss: line {line:.4g}, curve {curve:.4g} (bend trained, 30 "
            f"epochs)") in sweep_lines(summary)


@pytest.mark.slow
def test_figures_of_the_curve(swept):
    from landscape_dist.commands import plot

    out, _, _ = swept
    names = {p.rsplit("/", 1)[1] for p in plot(out / "surface.h5", out / "figures")}
    assert {"c_curve_loss.png", "c_contour.png", "c_filled.png"} <= names


def _train(minima, path, epochs, seed=0, **patch):
    from landscape_dist.model.curve import BendTraining, bend_key, train_bend

    (a, _), (b, _) = _weights(minima[0]), _weights(minima[1])
    x, y = curve_train()
    training = BendTraining("polychain", epochs, 64, "adam", 0.01, seed)
    key = bend_key(training, a, b, x, y, "m")
    return train_bend(curve_model(), a, b, x, y, training, path, key, progress=False)


@pytest.mark.slow
def test_a_rerun_reuses_the_bend_and_resumes_an_interrupted_training(minima, tmp_path,
                                                                     monkeypatch):
    from landscape_dist.model import curve as training

    whole, info = _train(minima, tmp_path / "whole.h5", 4)
    assert info["status"] == "trained" and info["steps_run"] == 8
    again, info = _train(minima, tmp_path / "whole.h5", 4)
    assert info["status"] == "reused" and info["steps_run"] == 0
    np.testing.assert_array_equal(again, whole)
    # interrupted after its second epoch was saved: the rerun resumes there and ends where the
    # uninterrupted training did
    writes, write = [], training.write_bend

    def interrupted(path, saved):
        write(path, saved)
        writes.append(saved.epochs_done)
        if saved.epochs_done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "write_bend", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(minima, tmp_path / "cut.h5", 4)
    monkeypatch.setattr(training, "write_bend", write)
    resumed, info = _train(minima, tmp_path / "cut.h5", 4)
    assert writes == [1, 2] and info["status"] == "resumed" and info["resumed_at_epoch"] == 2
    np.testing.assert_allclose(resumed, whole, rtol=1e-6, atol=1e-7)
    # more epochs go on from fewer; other settings, or fewer epochs than saved, start again
    assert _train(minima, tmp_path / "whole.h5", 5)[1]["status"] == "resumed"
    assert _train(minima, tmp_path / "whole.h5", 3)[1]["status"] == "restarted"
    assert _train(minima, tmp_path / "whole.h5", 3, seed=1)[1]["status"] == "restarted"


@pytest.mark.slow
def test_a_second_sweep_reuses_the_saved_bend(minima, swept, tmp_path):
    from landscape_dist.commands import sweep

    out, _, first = swept
    bend_file = first.meta["bend_training"]["file"]
    (tmp_path / bend_file.rsplit("/", 1)[1]).write_bytes(open(bend_file, "rb").read())
    summary = sweep(config_from_dict(_settings(minima)), tmp_path, in_process=True, progress=False)
    info = summary["slices"]["c"]["bend_training"]
    assert info["status"] == "reused" and info["steps_run"] == 0
    second = read_surface(tmp_path / "surface.h5")["c"]
    np.testing.assert_array_equal(second.curves["curve"].values["train/loss"],
                                  first.curves["curve"].values["train/loss"])


@pytest.mark.parametrize("directions, message", [
    ({"models": ["a.keras"]}, "The 'slices.0.directions.models' setting must be a list of 2 "
     "models, the curve's ends (.keras or .weights.h5 files, or 'path:0', 'path:-1' for "
     "checkpoints of the training path). Got ['a.keras'] instead."),
    ({"models": ["a.keras", "b.keras", "c.keras"]}, "The 'slices.0.directions.models' setting "
     "must be a list of 2 models, the curve's ends (.keras or .weights.h5 files, or 'path:0', "
     "'path:-1' for checkpoints of the training path). Got ['a.keras', 'b.keras', 'c.keras'] "
     "instead."),
    ({"bend": "spline"}, "The 'slices.0.directions.bend' setting must be one of ('bezier', "
     "'polychain'). Got 'spline' instead."),
    ({"points": 1}, "The 'slices.0.directions.points' setting must be an integer >= 2 (values "
     "of t from 0 to 1). Got 1 instead."),
    ({"epochs": 0}, "The 'slices.0.directions.epochs' setting must be an integer >= 1, or null "
     "(the train section's). Got 0 instead."),
    ({"learning_rate": -1.0}, "The 'slices.0.directions.learning_rate' setting must be a number "
     "> 0, or null (the train section's). Got -1.0 instead."),
    ({"batchnorm": "interpolate"}, "The 'slices.0.directions.batchnorm' setting must be one of "
     "('recompute', 'centre') (statistics are re-estimated along the curve, or held at A's). "
     "Got 'interpolate' instead."),
])
def test_bad_curve_settings_are_one_line(directions, message):
    settings = _settings(["a.keras", "b.keras"], directions)
    with pytest.raises(ConfigError) as err:
        config_from_dict(settings)
    assert str(err.value) == message


def test_a_one_dimensional_grid_and_an_unknown_optimizer_are_refused(minima, tmp_path):
    from landscape_dist.commands import sweep

    settings = _settings(minima)
    settings["grid"]["y"] = None
    with pytest.raises(ConfigError, match=r"^The 'slices.0.grid.y' setting must be a mapping"):
        config_from_dict(settings)
    config = config_from_dict(_settings(minima, {"optimizer": "nonesuch"}))
    with pytest.raises(ValueError) as err:
        sweep(config, tmp_path, in_process=True, progress=False)
    assert str(err.value) == ("The 'slices.0.directions.optimizer' setting must name a Keras "
                              "optimizer such as 'adam' or 'sgd'. Got 'nonesuch' instead.")


@pytest.mark.slow
def test_on_ray_the_curve_equals_in_process(ray_cluster, minima, swept, tmp_path):
    from landscape_dist.commands import sweep

    out, _, local = swept
    bend_file = local.meta["bend_training"]["file"]
    settings = _settings(minima, {"bend_file": bend_file}, cluster={"num_workers": 2})
    summary = sweep(config_from_dict(settings), tmp_path, progress=False)
    assert summary["slices"]["c"]["bend_training"]["status"] == "reused"
    remote = read_surface(tmp_path / "surface.h5")["c"]
    for name in ("curve", "line"):
        for quantity, values in local.curves[name].values.items():
            np.testing.assert_allclose(remote.curves[name].values[quantity], values, rtol=1e-6)
    np.testing.assert_allclose(remote.values["train/loss"], local.values["train/loss"], rtol=1e-6)


def test_both_curves_join_the_ends_through_the_bend_on_their_plane():
    t = np.linspace(0, 1, 5)
    bend = np.array([0.3, 0.8])
    for kind in ("bezier", "polychain"):
        c = bend_coefficients(kind, t)
        np.testing.assert_allclose(c.sum(axis=1), 1.0)
        xy = curve_coordinates(kind, t, bend)
        np.testing.assert_allclose(xy[[0, -1]], [[0, 0], [1, 0]], atol=1e-15)
    np.testing.assert_allclose(curve_coordinates("polychain", t, bend)[2], bend)  # t = 1/2
    np.testing.assert_allclose(curve_coordinates("polychain", t, bend)[1], bend / 2)
    np.testing.assert_allclose(curve_coordinates("bezier", t, bend)[2], 0.5 * bend + [0.25, 0])
    assert barrier([1.0, 4.0, 2.0, 3.0]) == 2.0  # 4 - (1 + 3) / 2
    assert np.isnan(barrier([1.0, np.nan, 3.0]))
    with pytest.raises(ValueError, match="The 'bend' parameter must be one of"):
        bend_coefficients("spline", t)


@pytest.mark.slow
def test_in_a_notebook_the_bend_trains_on_the_arrays_given(minima):
    import keras

    import landscape_dist as ld

    model = keras.models.load_model(minima[0], compile=False)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = curve_train()
    result = ld.landscape(model, (x, y), slices=[{"name": "c", "directions": {
        "kind": "curve", "models": minima, "points": 3, "epochs": 2, "batch_size": 64}}],
        grid={"x": {"min": -0.5, "max": 1.5, "points": 3},
              "y": {"min": -0.5, "max": 1.5, "points": 3}}, progress=False)
    assert result.summary["slices"]["c"]["bend_training"]["status"] == "trained"
    curve = result["c"].curves["curve"]
    (b, layout) = _weights(minima[1])
    own = _evaluate_at(b, layout, x, y)  # the curve's end B, on the arrays given
    np.testing.assert_allclose(curve.values["loss"][-1], own["loss"], rtol=1e-5)


@pytest.mark.parametrize("bend_file, message", [
    ("{tmp}", "The bend file '{tmp}' is a directory, not a file. Give the "
     "'slices.0.directions.bend_file' setting the path of a file, such as '{tmp}/bend.h5'."),
    ("{tmp}/data.npz", "The file '{tmp}/data.npz' is damaged or not an HDF5 file (file "
     "signature not found). Give the 'slices.0.directions.bend_file' setting another path, or "
     "delete the file to train the bend again."),
    ("{tmp}/data.npz/bend.h5", "The bend file '{tmp}/data.npz/bend.h5' cannot be written (File "
     "exists). Give the 'slices.0.directions.bend_file' setting a path in a writable folder."),
])
def test_a_bend_file_that_cannot_be_read_or_written_is_one_line_and_kept(
        minima, tmp_path, bend_file, message):
    from landscape_dist.commands import sweep

    data = tmp_path / "data.npz"
    data.write_bytes(b"not a bend")
    bend_file, message = (s.replace("{tmp}", str(tmp_path)) for s in (bend_file, message))
    config = config_from_dict(_settings(minima, {"bend_file": bend_file}))
    with pytest.raises(ValueError) as err:
        sweep(config, tmp_path / "out", in_process=True, progress=False)
    assert str(err.value) == message
    assert data.read_bytes() == b"not a bend" and not (tmp_path / "out" / "surface.h5").exists()


def test_more_points_than_both_curves_weights_fit_are_refused_before_training(minima, tmp_path):
    from landscape_dist.commands import sweep

    config = config_from_dict(_settings(minima, {"points": 10 ** 8}))
    with pytest.raises(ValueError) as err:
        sweep(config, tmp_path, in_process=True, progress=False)
    assert str(err.value) == (
        "The 'slices.0.directions.points' setting must be small enough that both curves' weight "
        "vectors (2 x points x 42 weights x 12 bytes = 93.9 GiB) fit in 4 GiB. Got 100000000 "
        "instead. Use at most 4260880 points.")
    assert not list(tmp_path.glob("bend-*.h5"))  # refused before the bend was trained


def test_a_curve_that_leaves_the_grid_is_warned_of(caplog):
    import logging
    from types import SimpleNamespace

    from landscape_dist.sweeping.curves import warn_off_grid

    meta = {"kind": "curve", "bend": "polychain", "bend_coords": [0.5, 0.8], "t_points": 5}
    plan = SimpleNamespace(name="c", plane=SimpleNamespace(meta=meta), xs=np.linspace(-0.5, 1.5, 3),
                           ys=np.linspace(-0.2, 0.2, 3))
    caplog.set_level(logging.WARNING, logger="landscape_dist")
    warn_off_grid(plan, "slices.0.grid")
    assert [r.getMessage() for r in caplog.records] == [
        "slice 'c': its curves run over x 0..1, y 0..0.8, beyond the grid (x -0.5..1.5, y "
        "-0.2..0.2): the loss around them is not swept. Widen slices.0.grid.x and "
        "slices.0.grid.y to hold them."]
    caplog.clear()
    warn_off_grid(SimpleNamespace(**{**vars(plan), "ys": np.linspace(-0.2, 0.8, 3)}),
                  "slices.0.grid")  # the polychain's bend on the grid's edge: inside
    assert not caplog.records


def test_info_gives_the_bend_training_a_line_and_the_dry_run_counts_it(monkeypatch):
    from landscape_dist.cli.lines import estimate_lines, info_lines

    import importlib

    estimate_module = importlib.import_module("landscape_dist.commands.estimate")
    lines = info_lines({"file": "s.h5", "complete": True, "versions": {}, "slices": {"c": {
        "grid": {"x": [0.0, 1.0, 3]}, "points": 3, "done": 3, "quantities": ["loss"],
        "path": False, "directions": {"kind": "curve", "bend": "bezier",
                                      "bend_training": {"status": "reused", "epochs": 30,
                                                        "final_loss": 0.123456}}}}})
    assert lines[3:] == ["    directions: kind curve, bend bezier",
                         "    bend_training: status reused, epochs 30, final_loss 0.123"]
    probe = {"probe_points": 16, "points_per_s": 100.0, "compile_s": 0.0,
             "flop_per_point": 1e6, "examples": 128, "strategy": None}
    monkeypatch.setattr(estimate_module, "_probe", lambda *args, **kwargs: probe)
    settings = _settings(["a.keras", "b.keras"], data=TRAIN)  # the train section's 30 epochs
    result = estimate_module.estimate(config_from_dict(settings), in_process=True)
    s = result["slices"]["c"]
    # an epoch as 3 points (forward and backward passes), both curves' 2 x 11 points
    assert s["preparation"] == {"epochs": 30, "points": 22, "what": "the bend's training",
                                "estimated_s": round((30 * 3 + 22) / 100.0, 1)}
    assert s["estimated_s"] == round(12 / 100.0, 1)  # the grid alone
    assert result["as_configured_s"] == [round(12 / 100 + 1.12, 1)] * 2
    assert estimate_lines(result)[1].endswith(
        "; with the bend's training first (30 epochs over the training data, unless a saved "
        "one is reused) and 22 points beside the grid: about 1 s more")
