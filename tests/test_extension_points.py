"""The extension points: a plane kind, a quantity and an output format, each added from outside the
package by registering one class or function, work end to end; errors are reworded per layer."""


import h5py
import numpy as np
import pytest

from landscape_dist.cli import FLAGS
from landscape_dist.config import ConfigError, config_from_dict
from landscape_dist.config.schema import AxisConfig, SettingError
from landscape_dist.core.layout import WeightLayout
from landscape_dist.core.quantities import POINTS, Part, QuantitySet
from landscape_dist.errors import LandscapeError, in_terms
from landscape_dist.execution import InProcessPool, Job
from landscape_dist.figures.formats import OUTPUT_FORMATS
from landscape_dist.registry import QUANTITIES
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.model.trajectory import read_trajectory
from landscape_dist.commands import plot, sweep
from landscape_dist.store.surface import read_surface

from extension_plugins import AxesDirections, SquaredNorm, write_npz

GRID = {"x": {"points": 5}, "y": {"points": 3}, "tile": [2, 2]}


def test_a_registered_plane_kind_is_configured_and_swept(tmp_path, axes_kind):
    config = config_from_dict({"grid": GRID, "slices": [
        {"name": "axes", "directions": {"kind": "axes", "first": 3, "second": 70}}]})
    assert config.slices[0].directions == AxesDirections(kind="axes", first=3, second=70)
    sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["axes"]
    expected = np.zeros((2, surface.layout.size), np.float32)
    expected[0, 3] = expected[1, 70] = 1.0
    np.testing.assert_array_equal(surface.directions, expected)
    assert surface.meta["kind"] == "axes" and surface.done.all()
    # its own settings are checked like the built-in ones
    with pytest.raises(ConfigError) as err:
        config_from_dict({"slices": [{"directions": {"kind": "axes", "frist": 3}}]})
    assert str(err.value) == "Unknown setting 'slices.0.directions.frist'. Did you mean 'first'?"


def test_unknown_plane_kind_lists_the_registered_ones():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"slices": [{"directions": {"kind": "fisher"}}]})
    assert str(err.value) == ("The 'slices.0.directions.kind' setting must be one of "
                              "('random', 'pca', 'interpolate', 'models', 'file', 'hessian', 'curve'). "
                              "Got 'fisher' instead.")


@pytest.fixture
def squared_norm():
    QUANTITIES.register("squared_norm")(SquaredNorm)
    yield
    QUANTITIES.remove("squared_norm")


@pytest.mark.parametrize("shards", [1, 2])
def test_a_registered_quantity_is_computed_and_combined(squared_norm, shards, rng):
    pool = InProcessPool(ModelSpec.from_source("parabola"), DataSpec("parabola", num_shards=shards),
                         config_from_dict({}).evaluation, quantities=("loss", "squared_norm"))
    assert pool.names == ("loss", "squared_norm")
    size = pool.workers[0].evaluator.layout.size
    centre = rng.standard_normal(size).astype(np.float32)
    directions = rng.standard_normal((2, size)).astype(np.float32)
    pool.set_plane(centre, directions, [])
    coords = np.array([[0.0, 0.0], [0.5, -1.0]], np.float32)
    results = {}
    pool.run([Job(0, POINTS, coords)], results.__setitem__)
    expected = np.sum((centre.astype(np.float64) + coords.astype(np.float64) @ directions) ** 2, axis=1)
    np.testing.assert_allclose(results[0]["squared_norm"], expected, rtol=1e-5)
    assert np.all(np.isfinite(results[0]["loss"]))


def test_quantity_sets_combine_shards_exactly():
    parts = QuantitySet((Part("data", "mean", stored=False), Part("reg", "first", stored=False),
                         Part("acc", "mean")), sums=(("loss", ("data", "reg")),))
    assert parts.names == ("loss", "acc")
    weighted = QuantitySet((Part("a_loss"), Part("b_loss"), Part("reg", "first", stored=False)),
                           sums=(("loss", (("a_loss", 0.5), ("b_loss", 2.0), "reg")),))
    assert weighted.names == ("loss", "a_loss", "b_loss")
    out = weighted.finish({"a_loss": np.array([4.0]), "b_loss": np.array([1.0]), "reg": np.array([3.0])})
    np.testing.assert_allclose(out["loss"], [0.5 * 4 + 2 * 1 + 3])
    shard_values = [{"data": np.array([2.0]), "reg": np.array([1.0]), "acc": np.array([0.0])},
                    {"data": np.array([5.0]), "reg": np.array([1.0]), "acc": np.array([1.0])}]
    out = parts.combine(shard_values, [1, 2])
    np.testing.assert_allclose(out["loss"], [(2.0 + 2 * 5.0) / 3 + 1.0])
    np.testing.assert_allclose(out["acc"], [2 / 3])
    with pytest.raises(ValueError, match="must be one of"):
        Part("x", "median")


@pytest.fixture
def npz_format():
    OUTPUT_FORMATS.register("npz")(write_npz)
    yield
    OUTPUT_FORMATS.remove("npz")


def test_a_registered_output_format_is_written(tmp_path, npz_format):
    config = config_from_dict({"grid": GRID, "plot": {"format": "npz"}})
    sweep(config, tmp_path, in_process=True, progress=False)
    written = plot(tmp_path / "surface.h5", tmp_path / "figs", config)
    assert written == [str(tmp_path / "figs" / "random.npz")]
    stored = read_surface(tmp_path / "surface.h5")["random"].values["loss"]
    np.testing.assert_array_equal(np.load(written[0])["loss"], stored)
    both = plot(tmp_path / "surface.h5", tmp_path / "figs2", config, formats=("npz", "svg"))
    assert sorted(p.rsplit(".", 1)[1] for p in both) == ["npz"] + ["svg"] * 4  # contours, 3-D, heat map


def test_plot_format_choices_come_from_the_registry():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"plot": {"format": "ply"}})
    assert str(err.value) == ("The 'plot.format' setting must be one of ('png', 'pdf', 'svg', "
                              "'vtp', 'html', 'gif', 'mp4', 'tensorboard'). Got 'ply' instead.")


def test_errors_name_their_own_parameters_until_a_layer_rewords_them():
    with pytest.raises(SettingError) as err:
        AxisConfig(points=1)
    assert str(err.value) == "The 'points' setting must be an integer >= 2. Got 1 instead."
    assert str(err.value.under("slices.2.grid.x")) == (
        "The 'slices.2.grid.x.points' setting must be an integer >= 2. Got 1 instead.")

    with pytest.raises(LandscapeError) as err:
        DataSpec("nowhere.npz").load()
    assert str(err.value) == "The 'source' parameter names 'nowhere.npz', which does not exist."
    with pytest.raises(LandscapeError) as err:
        with in_terms({"data": "'data.source' setting"}):
            DataSpec("nowhere.npz").load()
    assert str(err.value) == "The 'data.source' setting names 'nowhere.npz', which does not exist."

    with pytest.raises(LandscapeError) as err:
        sweep(config_from_dict({"grid": GRID}), "/dev/null/out", in_process=True, progress=False)
    assert str(err.value).endswith("is a file. Give another output directory.")
    assert str(err.value.reworded(FLAGS)).endswith("is a file. Give another --out.")


def test_trajectory_files_of_the_first_format_read_back(tmp_path):
    """The first trajectory files stored the layout as a name list and shape strings."""
    path = tmp_path / "trajectory.h5"
    with h5py.File(path, "w") as f:
        f["weights"] = np.arange(16, dtype=np.float32).reshape(2, 8)
        f["step"] = np.array([0, 5])
        f["epoch"] = np.array([0, 1])
        f.attrs["layout_names"] = ["dense/kernel", "dense/bias", "scale"]
        f.attrs["layout_shapes"] = ["[3, 2]", "[1]", "[]"]
    traj = read_trajectory(path)
    assert traj.layout == WeightLayout(("dense/kernel", "dense/bias", "scale"), ((3, 2), (1,), ()))
    np.testing.assert_array_equal(traj.weights[1], np.arange(8, 16))


def test_layout_attributes_round_trip():
    layout = WeightLayout(("a", "b"), ((2, 3), ()))
    assert WeightLayout.from_attrs(layout.to_attrs()) == layout


@pytest.fixture
def npz_with_settings():
    from extension_plugins import NpzSettings, write_npz_with_settings
    from landscape_dist.registry import OutputFormat

    OUTPUT_FORMATS.register("npz2")(OutputFormat(write_npz_with_settings, NpzSettings))
    yield NpzSettings
    OUTPUT_FORMATS.remove("npz2")


def test_an_output_format_owns_its_settings(tmp_path, npz_with_settings):
    config = config_from_dict({"grid": GRID, "plot": {"format": "npz2", "options": {
        "npz2": {"compressed": True, "suffix": "_z"}}}})
    assert config.plot.options == {"npz2": npz_with_settings(compressed=True, suffix="_z")}
    assert config_from_dict(config.to_dict()).plot == config.plot  # the stored config reloads
    sweep(config, tmp_path, in_process=True, progress=False)
    written = plot(tmp_path / "surface.h5", tmp_path / "figs", config)
    assert written == [str(tmp_path / "figs" / "random_z.npz")]
    with np.load(written[0]) as stored:  # a compressed archive: deflated members
        assert stored.zip.infolist()[0].compress_type == 8
    plain = config_from_dict({"plot": {"format": "npz2"}})  # no options: the format's defaults
    assert plot(tmp_path / "surface.h5", tmp_path / "plain", plain) == [
        str(tmp_path / "plain" / "random.npz")]
    with pytest.raises(ConfigError) as err:
        config_from_dict({"plot": {"options": {"npz2": {"compresed": True}}}})
    assert str(err.value) == "Unknown setting 'plot.options.npz2.compresed'. Did you mean 'compressed'?"
    with pytest.raises(ConfigError) as err:
        config_from_dict({"plot": {"options": {"png": {"dpi": 3}}}})
    assert str(err.value) == ("The 'plot.options' setting must be a mapping whose keys are output "
                              "formats with settings of their own (npz2). Got 'png' instead.")
