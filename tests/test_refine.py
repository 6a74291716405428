"""Adaptive refinement: the point choice, the interpolated picture, and refined sweeps (in
process, interrupted and resumed, on Ray with shards and a killed worker)."""

import os
import signal

import h5py
import numpy as np
import pytest

from drills import AfterTiles, Interrupt, stop
from landscape_dist.config import config_from_dict, load_config
from landscape_dist.config.schema import SettingError
from landscape_dist.core.refine import Refiner, contour_shift, fill, lattice, strides
from landscape_dist.execution import InProcessPool, RayPool
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import plot, sweep
from landscape_dist.store.surface import read_surface


def _refine(z, **settings):
    """Refine a known array: (values evaluated, done, picture)."""
    refiner = Refiner(z.shape, **settings)
    values, done = np.full(z.shape, np.nan), np.zeros(z.shape, bool)
    for step in refiner.steps():
        r, c = refiner.points(step, values, done)
        assert not done[r, c].any()  # no point is evaluated twice
        values[r, c], done[r, c] = z[r, c], True
    return values, done, fill(values, done)


def _grid(n, m=None):
    y, x = np.meshgrid(np.linspace(-1, 1, m or n), np.linspace(-1, 1, n), indexing="ij")
    return x, y


def test_lattices_and_strides():
    assert strides((65, 65)) == [8, 4, 2, 1]
    assert list(lattice(11, 4)) == [0, 4, 8, 10]  # the last index always belongs
    assert strides((5, 5)) == [1]


@pytest.mark.parametrize("shape", [(65, 65), (51, 38)])
def test_a_bilinear_surface_needs_only_the_coarse_lattices_and_is_filled_exactly(shape):
    x, y = _grid(shape[1], shape[0])
    z = 3.0 + 0.5 * x - 0.25 * y + 0.2 * x * y  # bilinear: nothing to refine, exact everywhere
    values, done, picture = _refine(z, tol=1e-3, levels=25, log=True)
    s = strides(shape)[1]
    assert done.sum() == len(lattice(shape[0], s)) * len(lattice(shape[1], s))
    np.testing.assert_allclose(picture, z, rtol=1e-12)
    assert np.isnan(values[~done]).all()


def test_picture_passes_through_every_evaluated_point_and_nan_regions_are_resolved():
    x, y = _grid(65)
    z = 1.0 + x ** 2 + 2 * y ** 2 + 0.3 * np.sin(5 * x)
    z[(x > 0.3) & (x < 0.5) & (y > -0.2) & (y < 0.1)] = np.nan  # a diverged patch
    values, done, picture = _refine(z)
    np.testing.assert_array_equal(picture[done], values[done])
    nan = np.isnan(z)
    # every neighbour of a NaN point was evaluated: the patch's edge is exact to one point
    edge = np.zeros_like(nan)
    edge[1:] |= nan[:-1]
    edge[:-1] |= nan[1:]
    edge[:, 1:] |= nan[:, :-1]
    edge[:, :-1] |= nan[:, 1:]
    assert done[edge].all()


def test_contour_shift_counts_cells():
    x, y = _grid(65)
    z = np.exp(x)  # contour lines are vertical lines
    assert contour_shift(z, z) == 0.0
    moved = np.roll(z, 2, axis=1)
    moved[:, :2] = z[:, :2]
    assert contour_shift(moved, z) == 2.0


def test_a_curved_surface_is_resolved_with_far_fewer_points():
    x, y = _grid(257)
    z = (0.7 + 2 * (x - 0.2) ** 2 + (y + 0.1) ** 2 + 0.5 * np.sin(6 * x) * np.cos(4 * y) ** 2
         + 0.3 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.005))  # a narrow bump too
    values, done, picture = _refine(z)
    assert done.mean() < 0.1
    assert contour_shift(picture, z) <= 1.0
    assert np.max(np.abs(picture - z) / z) < 0.04  # tol: 1% of the log span (2.8 here)


SETTINGS = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
            "grid": {"x": {"min": -1.0, "max": 1.0, "points": 33},
                     "y": {"min": -1.0, "max": 1.0, "points": 33}, "tile": [4, 8]},
            "slices": [{"name": "random", "directions": {"seed": 4}}]}


def _config(refine=True, **extra):
    grid = {**SETTINGS["grid"], **({"refine": refine} if refine is not None else {})}
    return config_from_dict({**SETTINGS, "grid": grid, **extra})


def _pool(config):
    return InProcessPool(ModelSpec.from_source("parabola"), DataSpec("parabola"), config.evaluation)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """An unrefined sweep of the same slice, every point evaluated."""
    out = tmp_path_factory.mktemp("full")
    config = _config(refine=None)
    sweep(config, out, pool=_pool(config), progress=False)
    return read_surface(out / "surface.h5")["random"]


def _assert_refined_matches(surface, full):
    done = surface.done
    assert 0 < done.sum() < done.size
    for name, values in full.values.items():
        np.testing.assert_allclose(surface.values[name][done], values[done], rtol=1e-6)
        assert np.isnan(surface.values[name][~done]).all()
        np.testing.assert_array_equal(surface.filled[name][done], surface.values[name][done])
    np.testing.assert_array_equal(surface.interpolated, ~done)


def test_refined_sweep_stores_evaluated_values_and_a_labelled_picture(tmp_path, full):
    config = _config()
    summary = sweep(config, tmp_path, pool=_pool(config), progress=False)
    surface = read_surface(tmp_path / "surface.h5")["random"]
    _assert_refined_matches(surface, full)
    info = summary["slices"]["random"]["refinement"]
    assert info["evaluated"] == surface.done.sum() and info["points"] == 33 * 33
    assert contour_shift(surface.filled["loss"], full.values["loss"]) <= 1.0
    with h5py.File(tmp_path / "surface.h5", "r") as f:  # as any HDF5 reader sees it
        group = f["slices/random/filled"]
        assert "interpolated" in group.attrs["kind"]
        assert group["loss"].shape == (33, 33)
        assert np.isnan(f["slices/random/values/loss"][...]).sum() == 33 * 33 - info["evaluated"]
    images = plot(tmp_path / "surface.h5", tmp_path / "figures", config)
    assert any(name.endswith("random_contour.png") for name in images)
    from landscape_dist.figures.static import caption_text

    assert f"refined: {info['evaluated']:,} of 1,089 points evaluated, the rest interpolated" in \
        caption_text(surface)



def test_interrupted_refined_sweep_resumes_the_same_points(tmp_path, full):
    config = _config()
    sweep(config, tmp_path / "whole", pool=_pool(config), progress=False)
    whole = read_surface(tmp_path / "whole" / "surface.h5")["random"]
    with pytest.raises(Interrupt):  # stopped in the middle of the adaptive steps
        sweep(config, tmp_path / "cut", pool=_pool(config), progress=False,
              callbacks=[AfterTiles(12, stop)])
    summary = sweep(config, tmp_path / "cut", pool=_pool(config), progress=False)
    info = summary["slices"]["random"]
    assert info["tiles_resumed"] == 12 and info["tiles"] > 12  # journalled before the callback
    resumed = read_surface(tmp_path / "cut" / "surface.h5")["random"]
    np.testing.assert_array_equal(resumed.done, whole.done)
    _assert_refined_matches(resumed, full)


@pytest.mark.slow
def test_refined_sweep_on_ray_with_shards_and_a_killed_worker(ray_cluster, tmp_path, full):
    config = _config(data={"source": "parabola", "shards": 2},
                     cluster={"num_workers": 2, "max_tile_retries": 2})
    reference = _config()
    sweep(reference, tmp_path / "ref", pool=_pool(reference), progress=False)
    ref = read_surface(tmp_path / "ref" / "surface.h5")["random"]
    pool = RayPool(ModelSpec.from_source("parabola"), DataSpec("parabola", num_shards=2),
                   config.evaluation, config.cluster)
    try:
        pid = next(iter(pool.info.values()))["pid"]
        drill = AfterTiles(3, lambda: os.kill(pid, signal.SIGKILL))
        sweep(config, tmp_path / "ray", pool=pool, progress=False, callbacks=[drill])
        assert pool.replacements == 1
    finally:
        pool.close()
    got = read_surface(tmp_path / "ray" / "surface.h5")["random"]
    np.testing.assert_array_equal(got.done, ref.done)
    _assert_refined_matches(got, full)


def test_refine_settings_are_checked():
    with pytest.raises(SettingError) as err:
        _config(refine={"tol": 0})
    assert str(err.value) == ("The 'grid.refine.tol' setting must be a number between 0 and 1 (a "
                              "fraction of the values' span). Got 0.0 instead.")
    with pytest.raises(SettingError) as err:
        config_from_dict({**SETTINGS, "grid": {"x": {"points": 9}, "y": None, "tile": [1, 3],
                                               "refine": True}})
    assert str(err.value) == (
        "The 'grid.refine' setting must be left out on a 1-D slice (refinement splits 2-D cells). "
        "Got {'tol': 0.01, 'shift': 0.25, 'levels': None, 'log_levels': None} instead. Remove "
        "grid.refine from this slice, or give it a y axis.")
    config = load_config(None, ["grid.refine={shift: 0.5}"])
    assert config.slices[0].grid.refine.shift == 0.5 and config.slices[0].grid.refine.tol == 0.01
