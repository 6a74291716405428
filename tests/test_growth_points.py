"""Each growth point (a plane kind, a quantity, an output format, an execution backend) added from
a test module by registering one class or function, and run end to end through the command line:
the plane kind and the quantity on Ray workers (the quantity with the data in two shards), the
output format on the driver's plot of an in-process sweep (formats are written by the driver
alone), the backend as ``cluster.backend``."""

import numpy as np
import pytest
import yaml

import extension_plugins as plugins
from landscape_dist.cli import main
from landscape_dist.registry import BACKENDS, OUTPUT_FORMATS, PLANE_KINDS, QUANTITIES
from landscape_dist.store.surface import read_surface
from thread_backend import ThreadPool

GRID = {"x": {"points": 5}, "y": {"points": 3}, "tile": [2, 2]}


@pytest.fixture
def register():
    """``register(registry, name, entry)`` as a user's module would; removed after the test."""
    added = []

    def add(registry, name, entry):
        registry.register(name)(entry)
        added.append((registry, name))

    yield add
    for registry, name in added:
        registry.remove(name)


def _sweep(tmp_path, settings: dict, *args: str) -> dict:
    """``landscape-dist sweep`` of ``settings`` into tmp_path/out; the surface's slices."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings))
    assert main(["sweep", str(config), "--out", str(tmp_path / "out"), "--no-progress", *args]) == 0
    return read_surface(tmp_path / "out" / "surface.h5")


def _weights(surface) -> np.ndarray:
    """The weights at every grid point, (points, size), row-major over (y, x)."""
    ys, xs = np.meshgrid(surface.ycoordinates, surface.xcoordinates, indexing="ij")
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1)
    return surface.centre.astype(np.float64) + coords @ surface.directions.astype(np.float64)


@pytest.mark.ray
@pytest.mark.slow
def test_a_plane_kind_from_a_test_module_sweeps_on_ray(tmp_path, ray_cluster, register):
    register(PLANE_KINDS, "axes", plugins.AxesPlane)
    surfaces = _sweep(tmp_path, {"grid": GRID, "slices": [
        {"name": "axes", "directions": {"kind": "axes", "first": 3, "second": 70}}]})
    surface = surfaces["axes"]
    expected = np.zeros((2, surface.layout.size), np.float32)
    expected[0, 3] = expected[1, 70] = 1.0
    np.testing.assert_array_equal(surface.directions, expected)
    assert surface.meta["kind"] == "axes" and surface.meta["axes"] == [3, 70] and surface.done.all()


@pytest.mark.ray
@pytest.mark.slow
def test_a_quantity_from_a_test_module_combines_over_two_shards_on_ray(tmp_path, ray_cluster,
                                                                        register):
    register(QUANTITIES, "squared_norm", plugins.SquaredNorm)
    surface = _sweep(tmp_path, {"grid": GRID, "data": {"shards": 2}, "slices": [
        {"name": "r", "quantities": ["loss", "squared_norm"]}]})["r"]
    expected = np.sum(_weights(surface) ** 2, axis=1).reshape(surface.done.shape)
    np.testing.assert_allclose(surface.values["squared_norm"], expected, rtol=1e-5)
    in_process = _sweep(tmp_path / "local", {"grid": GRID, "slices": [{"name": "r"}]},
                        "--in-process")["r"]
    np.testing.assert_allclose(surface.values["loss"], in_process.values["loss"], rtol=1e-6)


@pytest.mark.slow
def test_an_output_format_from_a_test_module_is_written_by_plot(tmp_path, register):
    register(OUTPUT_FORMATS, "npz", plugins.write_npz)
    surface = _sweep(tmp_path, {"grid": GRID}, "--in-process")["random"]
    assert main(["plot", str(tmp_path / "out" / "surface.h5"), "--format", "npz",
                 "--out", str(tmp_path / "figs")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "figs" / "random.npz")["loss"],
                                  surface.values["loss"])


@pytest.mark.slow
def test_a_backend_from_a_test_module_runs_the_sweep(tmp_path, register):
    register(BACKENDS, "threads", ThreadPool)
    threads = _sweep(tmp_path, {"grid": GRID, "data": {"shards": 2}}, "cluster.backend=threads",
                     "cluster.num_workers=2")["random"]
    local = _sweep(tmp_path / "local", {"grid": GRID}, "--in-process")["random"]
    np.testing.assert_allclose(threads.values["loss"], local.values["loss"], rtol=1e-6)
    assert threads.done.all()
