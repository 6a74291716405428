"""Two fidelities (grid.fidelity): the discrepancy model on synthetic fields, and slices swept with
the subset's loss where the refinement asks and every example's on a coarse lattice, against a
full sweep and a draft; resumed after an interruption; on Ray with shards; bad settings."""

import json

import h5py
import numpy as np
import pytest
import yaml

from drills import AfterTiles, Interrupt
from landscape_dist.cli import main
from landscape_dist.commands import plot, sweep
from landscape_dist.config import config_from_dict
from landscape_dist.config.schema import ConfigError
from landscape_dist.core.fidelity import (Discrepancy, coarse_stride, lattice_mask,
                                          most_uncertain, unit_coords)
from landscape_dist.core.refine import contour_shift
from landscape_dist.execution import InProcessPool, RayPool
from landscape_dist.model.sources import ModelSpec
from landscape_dist.store.surface import read_surface
from landscape_dist.sweeping.inputs import data_specs


def _plane(shape):
    rows, cols = np.indices(shape)
    u = unit_coords(rows.ravel(), cols.ravel(), shape)
    return u, 2 * u[:, 1] - 1, 2 * u[:, 0] - 1  # positions, x, y in [-1, 1]


def test_coarse_stride_gives_at_least_the_points_asked_for():
    assert coarse_stride((257, 257), 17) == 16  # 17 x 17 points
    assert coarse_stride((65, 65), 17) == 4
    assert coarse_stride((65, 65), 3) == 8  # the coarsest lattice refinement visits: 9 x 9
    assert coarse_stride((33, 65), 17) == 2  # the shorter side decides
    assert lattice_mask((33, 33), 4).sum() == 81


def test_discrepancy_reproduces_a_smooth_field_and_its_scale():
    shape = (65, 65)
    u, x, y = _plane(shape)
    cheap = 1.0 + 3 * x ** 2 + 2 * y ** 2 + 0.3 * np.sin(5 * x)  # rough along x
    delta = 0.2 + 0.1 * x - 0.05 * y ** 2 + 0.03 * np.cos(2 * x * y)  # smooth
    full = np.exp(1.02 * np.log(cheap) + delta)
    at = lattice_mask(shape, coarse_stride(shape, 9)).ravel()  # 81 of 4,225 points
    model = Discrepancy().fit(u[at], full[at], cheap[at])
    assert model.log_ and abs(model.rho_ - 1.02) < 0.01
    picture, std = model.predict(u, cheap, return_std=True)
    error = np.abs(picture - full)
    assert np.max(error / full) < 5e-4  # measured: 1.6e-4
    assert np.all(error <= 4 * std + 1e-9)  # the deviation is an honest error bar here


def test_discrepancy_on_linear_values_and_bad_input():
    shape = (33, 33)
    u, x, y = _plane(shape)
    cheap = x - 2 * y  # takes negative values: no log
    full = 0.5 * cheap + 0.3 + 0.2 * x * y
    at = lattice_mask(shape, 4).ravel()
    model = Discrepancy().fit(u[at], full[at], cheap[at])
    assert not model.log_ and abs(model.rho_ - 0.5) < 0.02
    np.testing.assert_allclose(model.predict(u, cheap), full, atol=2e-3)
    with pytest.raises(ValueError, match="at least 4 points where both fidelities are finite. Got 3"):
        Discrepancy().fit(u[:3], full[:3], cheap[:3])


def test_most_uncertain_points_go_where_the_lines_are_steep_and_far_from_data():
    shape = (33, 33)
    u, x, y = _plane(shape)
    at = lattice_mask(shape, 8).ravel()
    cheap = 2 + x + y
    model = Discrepancy().fit(u[at], (1.1 * cheap + 0.1 * x * y)[at], cheap[at])
    slope = np.where(x > 0, 10.0, 1.0)  # steep on the right half: its lines move less
    picks = most_uncertain(model, u, slope, 4)
    assert len(set(picks)) == 4 and not at[picks].any()
    assert np.all(x[picks] < 0)


SETTINGS = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
            "grid": {"x": {"min": -1.0, "max": 1.0, "points": 33},
                     "y": {"min": -1.0, "max": 1.0, "points": 33}, "tile": [4, 8]},
            "slices": [{"name": "random", "directions": {"seed": 4}}]}
FIDELITY = {"examples": 128, "examples_seed": 3, "coarse": 9, "extra": 6}


def _config(fidelity=FIDELITY, **extra):
    grid = {**SETTINGS["grid"], **({"fidelity": fidelity} if fidelity else {})}
    return config_from_dict({**SETTINGS, "grid": grid, **extra})


def _pool(config):
    return InProcessPool(ModelSpec.from_source("parabola"), data_specs(config), config.evaluation)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The same slice swept on every example at every point, and as a draft on the subset."""
    out = tmp_path_factory.mktemp("references")
    full = _config(None)
    sweep(full, out / "full", pool=_pool(full), progress=False)
    draft = _config(None, evaluation={"examples": 128, "examples_seed": 3})
    sweep(draft, out / "draft", pool=InProcessPool(ModelSpec.from_source("parabola"),
                                                   data_specs(draft), draft.evaluation),
          progress=False)
    return (read_surface(out / "full" / "surface.h5")["random"],
            read_surface(out / "draft" / "surface.h5")["random"])


def _assert_two_fidelities_match(surface, full, draft):
    done, cheap_done = surface.done, surface.cheap_done
    assert 0 < done.sum() < cheap_done.sum() < done.size
    assert cheap_done[done].all()  # the coarse lattice has both fidelities
    for name, values in full.values.items():  # every example: equal to the full sweep's
        np.testing.assert_allclose(surface.values[name][done], values[done], rtol=1e-6)
        assert np.isnan(surface.values[name][~done]).all()
        np.testing.assert_array_equal(surface.filled[name][done], surface.values[name][done])
    for name, values in draft.values.items():  # the subset: equal to the draft's
        np.testing.assert_allclose(surface.cheap[name][cheap_done], values[cheap_done], rtol=1e-6)
        assert np.isnan(surface.cheap[name][~cheap_done]).all()
    np.testing.assert_array_equal(surface.interpolated, ~done)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The slice swept with two fidelities: its folder and summary."""
    out = tmp_path_factory.mktemp("two")
    config = _config()
    return out, sweep(config, out, pool=_pool(config), progress=False)


@pytest.mark.slow
def test_two_fidelity_slice_stores_both_and_a_labelled_estimate(swept, references):
    full, draft = references
    tmp_path, summary = swept
    config = _config()
    surface = read_surface(tmp_path / "surface.h5")["random"]
    _assert_two_fidelities_match(surface, full, draft)
    info = summary["slices"]["random"]["fidelity"]
    assert info["full_points"] == 81 + 6 == surface.done.sum()  # the 9 x 9 lattice, 6 extra
    assert info["cheap_points"] == surface.cheap_done.sum() and info["of"] == 256
    # the estimate against the full sweep (measured: 1.4% and 1 cell; the subset alone, the
    # draft, lies up to 11% and 15 cells away)
    reference, picture = full.values["loss"], surface.filled["loss"]
    assert np.max(np.abs(picture - reference) / reference) < 0.02
    assert contour_shift(picture, reference) <= 1.5
    assert np.all(surface.filled_std["loss"][surface.done] == 0)
    with h5py.File(tmp_path / "surface.h5", "r") as f:  # as any HDF5 reader sees it
        group = f["slices/random"]
        assert group["filled"].attrs["kind"].startswith("estimated: two fidelities")
        assert group["cheap"].attrs["examples"] == 128 and group["cheap"].attrs["of"] == 256
        assert json.loads(group.attrs["fidelity"])["full_points"] == 87
    from landscape_dist.figures.static import caption_text

    assert (f"two fidelities: 87 full-data points, {info['cheap_points']:,} subset points of 128 "
            f"examples, the rest estimated") in caption_text(surface)
    images = plot(tmp_path / "surface.h5", tmp_path / "figures", config)
    assert any(name.endswith("random_contour.png") for name in images)


@pytest.mark.slow
def test_interrupted_two_fidelity_sweep_resumes_to_the_same_file(tmp_path, swept, references):
    config = _config()
    whole = read_surface(swept[0] / "surface.h5")["random"]
    with pytest.raises(Interrupt):  # stopped in the middle of the subset's refinement
        sweep(config, tmp_path / "cut", pool=_pool(config), progress=False,
              callbacks=[AfterTiles(9)])
    summary = sweep(config, tmp_path / "cut", pool=_pool(config), progress=False)
    assert summary["slices"]["random"]["tiles_resumed"] == 9
    resumed = read_surface(tmp_path / "cut" / "surface.h5")["random"]
    np.testing.assert_array_equal(resumed.done, whole.done)
    np.testing.assert_array_equal(resumed.cheap_done, whole.cheap_done)
    for name in whole.filled:
        np.testing.assert_array_equal(resumed.values[name], whole.values[name])
        np.testing.assert_allclose(resumed.filled[name], whole.filled[name], rtol=1e-12)
    _assert_two_fidelities_match(resumed, *references)


@pytest.mark.slow
def test_two_fidelity_slice_on_ray_with_shards(ray_cluster, tmp_path, swept, references):
    config = _config(data={"source": "parabola", "shards": 2}, cluster={"num_workers": 2})
    pool = RayPool(ModelSpec.from_source("parabola"), data_specs(config), config.evaluation,
                   config.cluster)
    try:
        sweep(config, tmp_path, pool=pool, progress=False)
    finally:
        pool.close()
    surface = read_surface(tmp_path / "surface.h5")["random"]
    alone = read_surface(swept[0] / "surface.h5")["random"]  # in process, unsharded
    np.testing.assert_array_equal(surface.cheap_done, alone.cheap_done)
    _assert_two_fidelities_match(surface, *references)


@pytest.mark.parametrize("grid, message", [
    ({"fidelity": {"coarse": 2}}, "The 'grid.fidelity.coarse' setting must be an integer >= 3 "
     "(full-data points per side of the coarse lattice). Got 2 instead."),
    ({"fidelity": {"coarse": 40}}, "The 'grid.fidelity.coarse' setting must be at most the grid's "
     "33 points per side. Got 40 instead. Give fewer points, or a larger grid."),
    ({"fidelity": {"examples": 1}}, "The 'grid.fidelity.examples' setting must be an integer >= 2 "
     "(the cheap fidelity's subset of the examples). Got 1 instead."),
    ({"fidelity": {"extra": -1}}, "The 'grid.fidelity.extra' setting must be an integer >= 0 "
     "(further full-data points). Got -1 instead."),
    ({"fidelity": {"examples_seed": -1}}, "The 'grid.fidelity.examples_seed' setting must be an "
     "integer >= 0. Got -1 instead. Give a seed of 0 or more."),
    ({"fidelity": {"coarse": 9}, "y": None}, "The 'grid.fidelity' setting must be left out on a "
     "1-D slice (the refinement it drives splits 2-D cells). Got {'examples': 256, "
     "'examples_seed': 0, 'coarse': 9, 'extra': 0} instead. Remove grid.fidelity from this "
     "slice, or give it a y axis."),
])
def test_fidelity_settings_are_checked(grid, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({**SETTINGS, "grid": {**SETTINGS["grid"], **grid}})
    assert str(err.value) == message


def test_fidelity_with_a_draft_or_other_quantities_is_refused():
    with pytest.raises(ConfigError, match=r"^The 'grid.fidelity' setting must be left out of a "
                       r"draft \(evaluation.examples is 64\)"):
        _config(evaluation={"examples": 64})
    with pytest.raises(ConfigError, match=r"^The 'quantities' setting must be \['loss'\] in a "
                       r"slice with grid.fidelity"):
        config_from_dict({**SETTINGS, "grid": {**SETTINGS["grid"], "fidelity": FIDELITY},
                          "slices": [{"name": "r", "quantities": ["loss", "hessian_max"]}]})


def _sweep_error(tmp_path, capsys, settings) -> str:
    """The one line a refused in-process ``sweep`` of ``settings`` says (its status 2)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    code = main(["sweep", str(cfg), "--out", str(tmp_path / "out"), "--in-process", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_a_subset_larger_than_the_data_is_refused_on_the_command_line(tmp_path, capsys):
    settings = {**SETTINGS, "grid": {**SETTINGS["grid"], "fidelity": {"examples": 300}}}
    assert _sweep_error(tmp_path, capsys, settings) == ("landscape-dist: error: The 'grid.fidelity.examples' setting must be less "
                      "than the 256 examples of 'parabola' (a subset). Got 300 instead. Give "
                      "fewer examples, or remove grid.fidelity.")


@pytest.mark.parametrize("grid, message", [
    # 0 equals False: it was taken for 'off' while 1 was refused
    ({"fidelity": 0}, "The 'grid.fidelity' setting must be true, false or a mapping of settings. "
     "Got 0 instead. Give fidelity: true for the defaults, or false for none."),
    ({"refine": "yes"}, "The 'grid.refine' setting must be true, false or a mapping of settings. "
     "Got 'yes' instead. Give refine: true for the defaults, or false for none."),
    ({"fidelity": {"extra": 2000}}, "The 'grid.fidelity.extra' setting must be at most the "
     "grid's 1089 points. Got 2000 instead. Give fewer extra points."),
])
def test_fidelity_switches_and_extra_points_are_checked(grid, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({**SETTINGS, "grid": {**SETTINGS["grid"], **grid}})
    assert str(err.value) == message
    assert config_from_dict({**SETTINGS, "grid": {**SETTINGS["grid"], "fidelity": False,
                                                  "refine": False}}).slices[0].grid.fidelity is None


def test_fidelity_with_several_datasets_names_the_setting_on_the_command_line(tmp_path, capsys):
    settings = {**SETTINGS, "grid": {**SETTINGS["grid"], "fidelity": FIDELITY},
                "data": {"source": {"train": "parabola", "test": "parabola"}}}
    assert _sweep_error(tmp_path, capsys, settings) == ("landscape-dist: error: The 'grid.fidelity' setting must be left out when "
                      "'data.source' names several datasets. Got {'examples': 128, "
                      "'examples_seed': 3, 'coarse': 9, 'extra': 6} instead. Remove "
                      "grid.fidelity, or give data.source one dataset.")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_fidelities_from_arrays_in_a_notebook(references):
    """Arrays given to ``landscape`` reach the workers with their subset beside them (the pool
    once lacked the subset: 'The workers were not built for the quantities ['cheap/loss']')."""
    import landscape_dist as ld
    from landscape_dist.model.examples import parabola_data

    model = ModelSpec.from_source("parabola").build()
    result = ld.landscape(model, parabola_data(), in_process=True, progress=False,
                          grid={**SETTINGS["grid"], "fidelity": FIDELITY},
                          slices=[{"name": "random", "directions": {"seed": 4}}])
    _assert_two_fidelities_match(result["random"], *references)
    with pytest.raises(ConfigError, match=r"^The 'grid.fidelity.examples' setting must be less "
                       r"than the 256 examples of the data \(a subset\). Got 256 instead."):
        ld.landscape(model, parabola_data(), in_process=True, progress=False,
                     grid={**SETTINGS["grid"], "fidelity": {**FIDELITY, "examples": 256}})


@pytest.mark.parametrize("switch", ["fidelity", "refine"])
def test_a_slice_made_one_dimensional_is_told_to_turn_the_inherited_switch_off(switch):
    settings = {**SETTINGS, "grid": {**SETTINGS["grid"], switch: True},
                "slices": [{"name": "plane"}, {"name": "line", "grid": {"y": None}}]}
    with pytest.raises(ConfigError) as err:
        config_from_dict(settings)
    assert str(err.value).startswith(f"The 'slices.1.grid.{switch}' setting must be left out on a "
                                     "1-D slice")
    assert str(err.value).endswith(f"instead. Give this slice '{switch}: false' in its grid, or "
                                   "a y axis.")
    settings["slices"][1]["grid"][switch] = False  # the fix the message gives
    line = config_from_dict(settings).slices[1].grid
    assert line.ndim == 1 and getattr(line, switch) is None
