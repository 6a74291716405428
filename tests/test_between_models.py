"""Planes between models (interpolate, models) and directions from a file: the models are met at
their coordinates with their own evaluate; batch-norm statistics held or moving."""

import numpy as np
import pytest

from landscape_dist.config import ConfigError, config_from_dict
from landscape_dist.core.layout import WeightLayout
from landscape_dist.model.evaluator import LandscapeEvaluator
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import plot, sweep
from landscape_dist.planes.file import save_directions
from landscape_dist.store.surface import read_surface

MODEL, DATA = "tests.factories:bn_dropout_model", "tests.factories:bn_dropout_data"


@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    """Three versions of a batch-norm model (weights and statistics perturbed, seeded), saved as
    .keras files, with each one's own evaluate."""
    folder = tmp_path_factory.mktemp("models")
    x, y = DataSpec(DATA).load()
    rng = np.random.default_rng(21)
    files, own = [], []
    for name in "abc":
        model = ModelSpec.from_source(MODEL).build()
        for var in model.trainable_variables:
            var.assign(var.numpy() + 0.3 * rng.standard_normal(var.shape).astype(np.float32))
        for var in model.non_trainable_variables:  # moving mean and variance of the batch-norm
            value = var.numpy()
            shift = rng.uniform(0.5, 1.5, value.shape) if "variance" in var.path else rng.normal(0, 0.3, value.shape)
            var.assign((value * shift if "variance" in var.path else value + shift).astype(np.float32))
        path = folder / f"{name}.keras"
        model.save(path)
        files.append(str(path))
        own.append(model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True))
    return files, own


def _config(directions, grid):
    return config_from_dict({"model": {"source": MODEL}, "data": {"source": DATA}, "grid": grid,
                             "slices": [{"name": "s", "directions": directions}]})


@pytest.mark.parametrize("batchnorm", ["interpolate", "centre"])
def test_interpolation_meets_both_models(tmp_path, three_models, batchnorm):
    files, own = three_models
    config = _config({"kind": "interpolate", "models": files[:2], "batchnorm": batchnorm},
                     {"x": {"min": -0.5, "max": 1.5, "points": 5}, "y": None})
    sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["s"]
    np.testing.assert_array_equal(surface.xcoordinates, [-0.5, 0.0, 0.5, 1.0, 1.5])
    assert surface.meta["model_coords"] == {files[0]: [0.0], files[1]: [1.0]}
    for name in own[0]:
        np.testing.assert_allclose(surface.values[name][1], own[0][name], rtol=2e-5)
    if batchnorm == "interpolate":  # B with its own statistics
        for name in own[1]:
            np.testing.assert_allclose(surface.values[name][3], own[1][name], rtol=2e-5)
    else:  # B's weights with A's statistics: not B's own evaluate
        assert abs(surface.values["loss"][3] - own[1]["loss"]) > 1e-3
    images = plot(tmp_path / "surface.h5", tmp_path)
    assert [p.rsplit("/", 1)[1] for p in images] == ["s_1d.png"]


@pytest.mark.slow
def test_plane_through_three_models_meets_each_at_its_coordinates(tmp_path, three_models):
    files, own = three_models
    config = _config({"kind": "models", "models": files, "batchnorm": "interpolate"},
                     {"x": {"min": -0.5, "max": 1.5, "points": 5}, "y": {"min": -0.5, "max": 1.5,
                                                                        "points": 5}})
    sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["s"]
    coords = surface.meta["model_coords"]
    assert coords[files[0]] == [0.0, 0.0] and coords[files[1]] == [1.0, 0.0]
    cx, cy = coords[files[2]]
    assert cy > 0
    d0, d1 = surface.directions.astype(np.float64)
    assert abs(d0 @ d1) < 1e-5 * (d0 @ d0)  # Gram-Schmidt: d1 orthogonal to d0
    # the grid hits A and B; C through the stored plane, statistics moving with it
    for name in own[0]:
        np.testing.assert_allclose(surface.values[name][1, 1], own[0][name], rtol=2e-5)
        np.testing.assert_allclose(surface.values[name][1, 3], own[1][name], rtol=2e-5)
    model = ModelSpec.from_source(MODEL).build()
    x, y = DataSpec(DATA).load()
    ev = LandscapeEvaluator(model, x, y).set_plane(
        surface.centre, surface.directions, surface.non_trainable, surface.non_trainable_directions)
    at_c = ev.evaluate(np.array([[cx, cy]]))
    for name in own[2]:
        np.testing.assert_allclose(at_c[name][0], own[2][name], rtol=5e-5)
    assert plot(tmp_path / "surface.h5", tmp_path)[0].endswith("s_contour.png")


@pytest.mark.slow
def test_interpolation_between_checkpoints_of_the_path(tmp_path):
    from landscape_dist.model.reference import evaluate_per_point
    from landscape_dist.model.trajectory import read_trajectory
    from landscape_dist.commands import train

    base = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
            "train": {"epochs": 2, "record_every": 1}, "grid": {"x": {"min": 0.0, "max": 1.0,
                                                                      "points": 3}, "y": None},
            "slices": [{"name": "line", "directions": {"kind": "interpolate",
                                                       "models": ["path:0", "path:-1"]}}]}
    config = config_from_dict(base)
    train(config, tmp_path)
    sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["line"]
    traj = read_trajectory(tmp_path / "trajectory.h5")
    model = ModelSpec.from_source("parabola").build()
    x, y = DataSpec("parabola").load()
    ref = evaluate_per_point(model, x, y, WeightLayout.from_variables(model.trainable_variables),
                             traj.weights[[0, -1]])
    np.testing.assert_allclose(surface.values["loss"][[0, 2]], ref["loss"], rtol=1e-5)


def test_directions_from_a_file_reproduce_the_slice(tmp_path):
    grid = {"x": {"points": 4}, "y": {"points": 3}, "tile": [3, 4]}
    first = _config({"kind": "random", "seed": 4}, grid)
    sweep(first, tmp_path / "a", in_process=True, progress=False)
    original = read_surface(tmp_path / "a" / "surface.h5")["s"]
    save_directions(tmp_path / "d.npz", original.directions, original.layout)
    for source in (str(tmp_path / "d.npz"), str(tmp_path / "a" / "surface.h5")):
        out = tmp_path / ("npz" if source.endswith("npz") else "h5")
        sweep(_config({"kind": "file", "file": source}, grid), out, in_process=True, progress=False)
        again = read_surface(out / "surface.h5")["s"]
        np.testing.assert_array_equal(again.directions, original.directions)
        np.testing.assert_allclose(again.values["loss"], original.values["loss"], rtol=1e-6)


def test_bad_between_model_settings_are_one_line(tmp_path, three_models):
    files, _ = three_models
    with pytest.raises(ConfigError) as err:
        _config({"kind": "interpolate", "models": files}, {"y": None})
    assert str(err.value) == (
        f"The 'slices.0.directions.models' setting must be a list of 2 models (.keras or "
        f".weights.h5 files, or 'path:0', 'path:-1' for checkpoints of the training path). Got "
        f"{files!r} instead.")
    with pytest.raises(ConfigError) as err:
        _config({"kind": "interpolate", "models": files[:2]}, {})
    assert str(err.value) == ("The 'slices.0.grid.y' setting must be null (a 1-D slice) for kind "
                              "'interpolate'. Got 'a mapping' instead.")
    with pytest.raises(ConfigError) as err:
        _config({"kind": "models", "models": files, "batchnorm": "update_bn"}, {})
    assert str(err.value) == ("The 'slices.0.directions.batchnorm' setting must be one of "
                              "('centre', 'interpolate', 'recompute'). Got 'update_bn' instead.")
    parabola = {"x": {"points": 4}, "y": {"points": 3}}
    save_directions(tmp_path / "d.npz", np.ones((2, 5)), WeightLayout(("w",), ((5,),)))
    with pytest.raises(ValueError) as err:
        sweep(_config({"kind": "file", "file": str(tmp_path / "d.npz")}, parabola), tmp_path / "o",
              in_process=True, progress=False)
    assert str(err.value) == (
        f"The 'slices.0.directions.file' setting names '{tmp_path / 'd.npz'}', whose directions are for another "
        f"architecture (1 tensors, 5 weights) than the model (6 tensors, 164 weights).")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_several_training_runs_share_one_pca_plane_and_are_models(tmp_path):
    from landscape_dist.model.reference import evaluate_per_point
    from landscape_dist.model.trajectory import read_trajectory
    from landscape_dist.commands import train

    base = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
            "train": {"epochs": 3, "record_every": 1, "learning_rate": 0.01,
                      "runs": [{"seed": 0}, {"seed": 1, "optimizer": "sgd", "learning_rate": 0.05}]},
            "grid": {"x": {"min": None, "max": None, "points": 5},
                     "y": {"min": None, "max": None, "points": 5}},
            "slices": [{"name": "pca", "directions": {"kind": "pca", "ignore": "none"}},
                       {"name": "line", "directions": {"kind": "interpolate",
                                                       "models": ["path:-1", "run1:-1"]},
                        "grid": {"x": {"min": 0.0, "max": 1.0, "points": 3}, "y": None}}]}
    config = config_from_dict(base)
    summary = train(config, tmp_path)
    assert [r["trajectory"].rsplit("/", 1)[1] for r in summary["runs"]] == ["trajectory.h5",
                                                                            "trajectory_run1.h5"]
    sweep(config, tmp_path, in_process=True, progress=False)
    surfaces = read_surface(tmp_path / "surface.h5")
    pca = surfaces["pca"]
    assert pca.meta["paths"] == 2 and pca.meta["checkpoints_used"] == 8  # 4 + 4 checkpoints
    assert list(pca.runs) == ["run1"] and pca.runs["run1"].coords.shape == (4, 2)
    # every checkpoint of both runs lies inside the fitted grid
    for p in (pca.path, pca.runs["run1"]):
        assert pca.xcoordinates[0] < p.coords[:, 0].min() and p.coords[:, 0].max() < pca.xcoordinates[-1]
    run1 = read_trajectory(tmp_path / "trajectory_run1.h5")
    model = ModelSpec.from_source("parabola").build()
    x, y = DataSpec("parabola").load()
    ref = evaluate_per_point(model, x, y, WeightLayout.from_variables(model.trainable_variables),
                             run1.weights[-1:])
    np.testing.assert_allclose(surfaces["line"].values["loss"][2], ref["loss"][0], rtol=1e-5)
    np.testing.assert_allclose(pca.runs["run1"].values["loss"][-1], ref["loss"][0], rtol=1e-5)
    around = config_from_dict({**base, "slices": [{"name": "pca", "directions": {
        "kind": "pca", "ignore": "none", "around": 1}}]})
    sweep(around, tmp_path, in_process=True, progress=False, overwrite=True)
    other = read_surface(tmp_path / "surface.h5")["pca"]
    assert other.meta["around"] == 1 and not np.allclose(np.abs(other.directions),
                                                         np.abs(pca.directions), atol=1e-3)
    with pytest.raises(ValueError) as err:
        sweep(config_from_dict({**base, "slices": [{"name": "pca", "directions": {
            "kind": "pca", "around": 2}}]}), tmp_path, in_process=True, progress=False,
            overwrite=True)
    assert str(err.value) == ("The 'slices.0.directions.around' setting is 2, but 2 training "
                              "run(s) were recorded (0 to 1).")
    with pytest.raises(ConfigError) as err:
        config_from_dict({"train": {"runs": [{"seed": 1}, {"epochs": 0}]}})
    assert str(err.value) == "The 'train.runs.1.epochs' setting must be an integer >= 1. Got 0 instead."


def test_recomputed_statistics_equal_a_hand_written_re_estimation(tmp_path, three_models):
    """batchnorm: recompute re-estimates the batch-norm statistics at every point on the first
    `calibration` examples; checked against setting them by hand and calling Keras's evaluate."""
    import keras

    files, _ = three_models
    config = _config({"kind": "interpolate", "models": files[:2], "batchnorm": "recompute",
                      "calibration": 64}, {"x": {"min": -0.5, "max": 1.5, "points": 5}, "y": None})
    sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["s"]
    assert surface.meta["batchnorm"] == "recompute" and surface.meta["calibration"] == 64
    x, y = DataSpec(DATA).load()
    model = ModelSpec.from_source(MODEL).build()
    layout = WeightLayout.from_variables(model.trainable_variables)
    bn = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    dense = model.layers[1]  # the Dense layer feeding the batch normalisation
    for i, a in enumerate(surface.xcoordinates):
        weights = surface.centre.astype(np.float64) + a * surface.directions[0].astype(np.float64)
        for var, value in zip(model.trainable_variables, layout.unflatten(weights.astype(np.float32))):
            var.assign(value)
        h = np.asarray(dense(x[:64]), np.float64)  # the statistics of the calibration examples
        bn.moving_mean.assign(h.mean(axis=0).astype(np.float32))
        bn.moving_variance.assign(h.var(axis=0).astype(np.float32))
        ref = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
        for name in ref:
            np.testing.assert_allclose(surface.values[name][i], ref[name], rtol=1e-4)


def test_recompute_needs_batch_normalisation_and_one_shard(tmp_path):
    parabola = config_from_dict({"grid": {"x": {"points": 3}, "y": None}, "slices": [
        {"name": "s", "directions": {"kind": "interpolate", "models": ["path:0", "path:-1"],
                                     "batchnorm": "recompute"}}], "train": {"epochs": 1}})
    from landscape_dist.commands import train

    train(parabola, tmp_path)
    with pytest.raises(ValueError) as err:
        sweep(parabola, tmp_path, in_process=True, progress=False)
    assert str(err.value) == ("The 'slices.0.directions.batchnorm' setting is 'recompute', but the "
                              "model has no batch normalisation to re-estimate. Use batchnorm: "
                              "centre.")
