"""The ``tensorboard`` output format, read back by TensorBoard's own reader: the figures as
images, each 2-D slice as a mesh, the path's true loss as scalars, the config as text."""

import io
import sys

import h5py
import numpy as np
import pytest
import yaml

from landscape_dist.cli import main
from landscape_dist.commands import plot, sweep, train
from landscape_dist.config import config_from_dict
from landscape_dist.figures.common import heights
from landscape_dist.figures.tensorboard import triangle_mesh
from landscape_dist.store.surface import read_run_info, read_surface

TINY = {
    "model": {"source": "parabola"}, "data": {"source": "parabola"},
    "train": {"epochs": 2, "batch_size": 64, "learning_rate": 0.01, "record_every": 2,
              "record_unit": "step"},
    "grid": {"x": {"min": None, "max": None, "points": 5},
             "y": {"min": None, "max": None, "points": 4}, "tile": [4, 5]},
    "slices": [{"name": "pca", "directions": {"kind": "pca", "ignore": "none"}},
               {"name": "pca_line", "directions": {"kind": "pca", "ignore": "none"},
                "grid": {"y": None, "x": {"min": None, "max": None, "points": 6}}}],
    "plot": {"formats": ["png"], "zmax": 3.0},
}
DIVERGED = (1, 2)  # (row, column) of the 2-D slice made non-finite before the logs are written


def _accumulator(run_dir):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(run_dir), size_guidance={k: 0 for k in ea.DEFAULT_SIZE_GUIDANCE})
    acc.Reload()
    return acc


def _tensor(acc, tag):
    import tensorflow as tf

    (event,) = acc.Tensors(tag)
    return tf.make_ndarray(event.tensor_proto)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A tiny run with a path (a 2-D slice, one point of it made non-finite, and a 1-D slice),
    its png figures, and its tensorboard logs written twice: (output directory, config, what
    the second write returned)."""
    out = tmp_path_factory.mktemp("tensorboard")
    config = config_from_dict(TINY)
    train(config, out)
    sweep(config, out, in_process=True, progress=False)
    with h5py.File(out / "surface.h5", "r+") as f:
        f["slices/pca/values/loss"][DIVERGED] = np.nan
    plot(out / "surface.h5", out, config, formats=("png",))
    plot(out / "surface.h5", out, config, formats=("tensorboard",))
    written = plot(out / "surface.h5", out, config, formats=("tensorboard",))
    return out, config, written


def test_one_run_per_slice_and_a_second_write_replaces_the_first(logged):
    out, _, written = logged
    runs = sorted(p.name for p in (out / "tensorboard").iterdir())
    assert runs == ["pca", "pca_line"]
    for name in runs:
        events = list((out / "tensorboard" / name).glob("events.out.tfevents.*"))
        assert len(events) == 1 and str(events[0]) in written


def test_images_are_the_png_figures(logged):
    from PIL import Image

    out, _, _ = logged
    for name, expected in (("pca", {"contour", "filled", "3d", "heatmap", "path"}),
                           ("pca_line", {"1d", "path"})):
        acc = _accumulator(out / "tensorboard" / name)
        tags = {t.removeprefix("figures/") for t in acc.Tags()["tensors"] if t.startswith("figures/")}
        assert tags == expected
        for tag in tags:
            width, height, png = _tensor(acc, f"figures/{tag}")
            with Image.open(io.BytesIO(png)) as image, Image.open(out / f"{name}_{tag}.png") as drawn:
                assert image.format == "PNG" and image.size == drawn.size
                assert (int(width), int(height)) == drawn.size
                np.testing.assert_array_equal(np.asarray(image), np.asarray(drawn))


def test_mesh_vertices_are_the_grid_at_the_3d_heights_and_faces_skip_diverged_points(logged):
    out, config, _ = logged
    surface = read_surface(out / "surface.h5")["pca"]
    acc = _accumulator(out / "tensorboard" / "pca")
    vertices = _tensor(acc, "mesh/loss_VERTEX")[0]
    faces = _tensor(acc, "mesh/loss_FACE")[0]
    colours = _tensor(acc, "mesh/loss_COLOR")[0]
    ny, nx = surface.values["loss"].shape
    z, _ = heights(surface.values["loss"], config.plot)  # clipped at plot.zmax = 3
    X, Y = np.meshgrid(surface.xcoordinates, surface.ycoordinates)
    finite = np.isfinite(z).ravel()
    assert vertices.shape == (nx * ny, 3) and colours.shape == (nx * ny, 3)
    assert finite.sum() == nx * ny - 1 and np.nanmax(z) == 3.0
    expected = np.column_stack([X.ravel(), Y.ravel(), z.ravel()])
    np.testing.assert_allclose(vertices[finite], expected[finite].astype(np.float32))
    diverged = DIVERGED[0] * nx + DIVERGED[1]
    assert finite[faces].all() and diverged not in set(faces.ravel())
    # two triangles a cell; an inner point is a corner of six of them
    assert len(faces) == 2 * (nx - 1) * (ny - 1) - 6
    path = surface.path
    cloud = _tensor(acc, "path_mesh/loss_VERTEX")[0]
    np.testing.assert_allclose(cloud[:, 2], heights(path.values["loss"], config.plot)[0],
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["pca", "pca_line"])
def test_scalars_along_the_path_are_its_true_loss_at_its_steps(logged, name):
    import tensorflow as tf

    out, _, _ = logged
    path = read_surface(out / "surface.h5")[name].path
    acc = _accumulator(out / "tensorboard" / name)
    events = acc.Tensors("path/loss")
    assert [e.step for e in events] == path.step.tolist()
    np.testing.assert_allclose([float(tf.make_ndarray(e.tensor_proto)) for e in events],
                               path.values["loss"], rtol=1e-6)
    assert {"slice_at_path/loss", "path_geometry/distance"} <= set(acc.Tags()["tensors"])


def test_config_is_text(logged):
    out, _, _ = logged
    acc = _accumulator(out / "tensorboard" / "pca")
    text = _tensor(acc, "config").item().decode()
    unindented = "\n".join(line[4:] for line in text.splitlines())
    assert yaml.safe_load(unindented) == read_run_info(out / "surface.h5")["config"]


def test_triangles_keep_each_cell_half_whose_corners_are_finite():
    z = np.array([[0.0, 1.0, 2.0], [3.0, np.inf, 5.0]])
    vertices, faces = triangle_mesh(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0]), z)
    np.testing.assert_array_equal(vertices[:, 2], [0, 1, 2, 3, 0, 5])  # the hole at the lowest
    assert sorted(map(tuple, faces)) == [(1, 2, 5)]  # the only triangle avoiding point 4


def test_missing_tensorboard_is_refused_in_one_line_writing_nothing(logged, capsys, monkeypatch):
    out, _, _ = logged
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboard.plugins.mesh.summary_v2", None)
    before = sorted(p.name for p in out.rglob("*"))
    code = main(["plot", str(out / "surface.h5"), "--out", str(out), "--format", "tensorboard"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "landscape-dist: error: The output format 'tensorboard' needs the tensorboard package, "
        "which is not installed here. Install it with pip install 'landscape-dist[tensorboard]', "
        "or use another format."]
    assert sorted(p.name for p in out.rglob("*")) == before
