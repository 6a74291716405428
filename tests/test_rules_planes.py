"""The rules planes, sizes and settings keep: a plane that cannot mean anything is refused before
anything is written (in process and on Ray); every size is bounded before the work; settings that
would do nothing are refused."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import yaml

from landscape_dist.cli import main
from landscape_dist.commands import sweep
from landscape_dist.config import ConfigError, config_from_dict
from landscape_dist.config.schema import AxisConfig, CurvatureConfig, GridConfig
from landscape_dist.core.curvature import analyse, centre_eigen
from landscape_dist.core.grid import split_tiles
from landscape_dist.core.layout import WeightLayout
from landscape_dist.core.plane import Plane
from landscape_dist.errors import LandscapeError
from landscape_dist.model.sources import ModelSpec
from landscape_dist.planes.checks import check_plane
from landscape_dist.planes.file import save_directions
from landscape_dist.store import preflight
from landscape_dist.store.preflight import tile_count
from landscape_dist.commands.estimate import first_tile

GRID2 = {"x": {"points": 3}, "y": {"points": 3}, "tile": [3, 3]}
GRID1 = {"x": {"points": 3}, "y": None}


def _tree(path: Path):
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


@pytest.fixture(scope="module")
def parabola(tmp_path_factory):
    """The parabola model's layout and weights, two .keras files of it (A and B = A + 0.1) and C
    on the line through them (C = A + 2 (B - A)), and directions files: good, NaN, zeros, too
    narrow, parallel."""
    folder = tmp_path_factory.mktemp("parabola")
    model = ModelSpec.from_source("parabola").build()
    layout = WeightLayout.from_variables(model.trainable_variables)
    a = layout.flatten([v.numpy() for v in model.trainable_variables])
    model.save(folder / "a.keras")
    for weights, name in ((a + 0.1, "b"), (a + 0.2, "c")):
        for var, value in zip(model.trainable_variables, layout.unflatten(weights)):
            var.assign(value)
        model.save(folder / f"{name}.keras")
    good = np.random.default_rng(0).standard_normal((2, layout.size))
    nan = good.copy()
    nan[1, 3] = np.nan
    parallel = np.stack([good[0], 2 * good[0]])
    for name, directions in (("good", good), ("nan", nan), ("zeros", np.zeros_like(good)),
                             ("parallel", parallel)):
        save_directions(folder / f"{name}.npz", directions, layout)
    attrs = layout.to_attrs()
    np.savez(folder / "narrow.npz", directions=np.ones((2, 10), np.float32),
             layout_names=np.array(attrs["layout_names"]),
             layout_shapes=np.array(attrs["layout_shapes"]))
    return folder, layout


def _config(directions, grid=GRID2, **more):
    return config_from_dict({"model": {"source": "parabola"}, "data": {"source": "parabola"},
                             "grid": grid, "slices": [{"name": "s", "directions": directions}],
                             **more})


def _file_message(path, middle):
    return (f"The 'slices.0.directions.file' setting names '{path}', whose directions {middle} "
            f"Give a file of directions saved for this model.")


# ------------------------------------------------------------------ rule 2: planes that mean something

def test_planes_that_cannot_mean_anything_are_refused_before_anything_is_written(tmp_path, parabola):
    folder, layout = parabola
    n = layout.size
    a, b, c = (str(folder / f"{x}.keras") for x in "abc")
    cases = [
        ({"kind": "file", "file": str(folder / "nan.npz")}, GRID2, _file_message(
            folder / "nan.npz", f"hold NaN or infinite values (direction 1: 1 of {n} entries); "
                                f"every entry must be finite.")),
        ({"kind": "file", "file": str(folder / "zeros.npz")}, GRID2, _file_message(
            folder / "zeros.npz", "hold a direction of zeros (direction 0); every direction must "
                                  "be non-zero.")),
        ({"kind": "file", "file": str(folder / "narrow.npz")}, GRID2, _file_message(
            folder / "narrow.npz", f"are an array of shape 2 x 10; a 2-D slice of this model needs "
                                   f"2 x {n} (2 direction(s), one entry per weight).")),
        ({"kind": "file", "file": str(folder / "parallel.npz")}, GRID2, _file_message(
            folder / "parallel.npz", "are parallel (the part of direction 1 orthogonal to "
                                     "direction 0 is 0 of its norm, at most 1e-05); two "
                                     "directions must span a plane.")),
        ({"kind": "interpolate", "models": [a, a]}, GRID1,
         f"The 'slices.0.directions.models' setting names '{a}' and '{a}', which hold the same "
         f"weights (|B - A| = 0, at most 1e-06 of their norm 11.6); an interpolation needs two "
         f"different models. Name two different models."),
    ]
    for directions, grid, message in cases:
        out = tmp_path / "out"
        with pytest.raises(ValueError) as err:
            sweep(_config(directions, grid), out, in_process=True, progress=False)
        assert str(err.value) == message
        assert not out.exists()
    with pytest.raises(ValueError) as err:
        sweep(_config({"kind": "models", "models": [a, b, c]}), tmp_path / "out", in_process=True,
              progress=False)
    assert str(err.value).startswith(
        "The 'slices.0.directions.models' setting names three models on one line (the part of C "
        "- A off the line through A and B is ")
    assert str(err.value).endswith(
        f" of |C - A|, at most 1e-05); a plane needs C off that line. Name a C that is not on the "
        f"line through '{a}' and '{b}'.")
    assert not (tmp_path / "out").exists()


def test_every_kinds_plane_is_checked_in_one_place():
    layout = WeightLayout(("w",), ((4,),))
    centre = np.ones(4)
    for directions, message in [
        (np.ones((1, 4)), "are an array of shape 1 x 4; a 2-D slice of this model needs 2 x 4 "
                          "(2 direction(s), one entry per weight)."),
        (np.array([[1, 0, 0, 0], [0, np.inf, 0, 0]]),
         "hold NaN or infinite values (direction 1: 1 of 4 entries); every entry must be finite."),
        (np.array([[1, 0, 0, 0], [1e-50, 0, 0, 0]]),
         "hold a direction of zeros (direction 1); every direction must be non-zero."),
        (np.array([[1, 2, 3, 4], [2, 4, 6, 8.00001]]),
         "are parallel (the part of direction 1 orthogonal to direction 0 is 5.95e-07 of its "
         "norm, at most 1e-05); two directions must span a plane."),
    ]:
        with pytest.raises(LandscapeError) as err:
            check_plane(Plane.make(centre, directions, layout, {}), 4, 2)
        assert str(err.value) == f"The directions built from the 'directions' parameter {message}"
    check_plane(Plane.make(centre, np.eye(4)[:2], layout, {}), 4, 2)


def _cli(tmp_path, capsys, settings, *args):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    code = main(["sweep", str(cfg), "--out", str(tmp_path / "out"), "--no-progress", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_bad_directions_file_on_ray_leaves_nothing_and_the_corrected_rerun_works(
        ray_cluster, tmp_path, capsys, parabola):
    folder, layout = parabola
    settings = {"model": {"source": "parabola"}, "data": {"source": "parabola"}, "grid": GRID2,
                "slices": [{"name": "s", "directions": {"kind": "file",
                                                        "file": str(folder / "nan.npz")}}],
                "cluster": {"num_workers": 1}}
    (tmp_path / "out").mkdir()
    code, err = _cli(tmp_path, capsys, settings)
    assert code == 2 and err == ["landscape-dist: error: " + _file_message(
        folder / "nan.npz", f"hold NaN or infinite values (direction 1: 1 of {layout.size} "
                            f"entries); every entry must be finite.")], err
    assert _tree(tmp_path / "out") == []  # no .partial, no journal
    settings["slices"][0]["directions"]["file"] = str(folder / "good.npz")
    code, err = _cli(tmp_path, capsys, settings)
    assert code == 0, err
    assert (tmp_path / "out" / "surface.h5").is_file()


# ------------------------------------------------------------------ rule 3: sizes bounded before work

def test_a_dry_run_refuses_a_huge_grid_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(preflight, "_available_memory", lambda: 8 * 2 ** 30)
    settings = {"model": {"source": "parabola"}, "data": {"source": "parabola"}}
    code, err = _cli(tmp_path, capsys, settings, "--dry-run", "--in-process",
                     "grid.x.points=1000000", "grid.y.points=1000000")
    assert code == 2 and err == [
        "landscape-dist: error: The grid of slice 'random' (1000000 x 1000000 points in tiles of "
        "16 x 16) makes 3.91e+09 tiles, whose bookkeeping needs at least 1.86e+03 GiB of the "
        "driver's memory, more than half the 8 GiB available. Use larger tiles (grid.tile) or "
        "fewer points (grid.x.points, grid.y.points)."], err
    assert not (tmp_path / "out").exists()


def test_tiles_are_counted_and_the_first_made_without_making_the_others():
    for shape, tile, order in itertools.product(
            [(1, 2), (5, 3), (17, 16), (40, 33)], [(1, 1), (3, 4), (16, 16)],
            ["rows", "coarse_to_fine"]):
        tiles = split_tiles(shape, tile, order)
        assert tile_count(shape, tile, order) == len(tiles)
        assert first_tile(shape, tile, order) == tiles[0]


def test_more_eigenvalues_than_weights_are_refused_and_fewer_found_are_not_converged(tmp_path):
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((25, 25)))
    hessian = q @ np.diag(np.repeat([3.0, 2.0, 1.0, -1.0, 0.5], 5)) @ q.T  # 5 distinct values
    layout = WeightLayout(("w",), ((25,),))
    matvec = lambda v, rows=None: v @ hessian  # noqa: E731
    with pytest.raises(ValueError) as err:
        analyse(matvec, layout, CurvatureConfig(top_k=30, steps=40))
    assert str(err.value) == ("The 'curvature.top_k' setting must be at most the model's 25 "
                              "weights (its Hessian has 25 eigenvalues). Got 30 instead. Set "
                              "curvature.top_k to 25 or fewer.")
    eigen = centre_eigen(matvec, 25, CurvatureConfig(top_k=8, steps=40), rng)
    assert len(eigen.top_values) == 5 and not eigen.converged
    eigen = centre_eigen(matvec, 25, CurvatureConfig(top_k=2, steps=40), rng)
    assert eigen.converged


def test_a_hessian_eigenvector_the_model_lacks_is_refused_before_anything_is_written(tmp_path):
    config = _config({"kind": "hessian", "which": ["top9000", "min"]})
    with pytest.raises(ValueError) as err:
        sweep(config, tmp_path / "out", in_process=True, progress=False)
    assert str(err.value) == (
        "The 'slices.0.directions.which' setting must be eigenvectors the model has: 'top1' to "
        "'top8513' or 'min' (it has 8513 weights). Got ['top9000', 'min'] instead.")
    assert not (tmp_path / "out").exists()


def test_sizes_of_plots_and_names_are_bounded_at_load():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"plot": {"animation_frames": 10 ** 9}})
    assert str(err.value) == ("The 'plot.animation_frames' setting must be at most 10000 (each "
                              "frame is drawn on its own). Got 1000000000 instead.")
    name = "n" * 211
    with pytest.raises(ConfigError) as err:
        config_from_dict({"slices": [{"name": name}]})
    assert str(err.value) == (
        f"The slice name '{name}' is 211 bytes; its figures' file names add up to 45 more "
        f"('_<quantity>_heatmap.png', a quantity's name counted as 32 bytes), beyond the 255 "
        f"bytes a file name may have. Give the slice a name of at most 210 bytes.")
    with pytest.raises(ConfigError) as err:  # the configured formats' suffixes count
        config_from_dict({"slices": [{"name": "n" * 210}], "plot": {"formats": ["png", "html"]}})
    assert "add up to 46 more ('_<quantity>_heatmap.html'" in str(err.value)
    with pytest.raises(ConfigError) as err:  # seeds lengthen names; datasets lengthen suffixes
        config_from_dict({"data": {"source": {"train": "parabola", "test": "parabola"}},
                          "slices": [{"name": "n" * 200, "directions": {"seeds": [1]}}]})
    assert str(err.value).startswith(f"The slice name '{'n' * 200}_seed1' is 206 bytes; its "
                                     f"figures' file names add up to 51 more ('_<dataset>-")
    config_from_dict({"slices": [{"name": "n" * 210}]})


# ------------------------------------------------------------------ rule 9: settings that do nothing

@pytest.mark.parametrize("directions, grid, setting, why", [
    ({"kind": "models", "models": ["a", "b", "c"], "normalization": "filter"}, {}, "normalization",
     "its directions are the differences between the models"),
    ({"kind": "interpolate", "models": ["a", "b"], "ignore": "biasbn"}, {"y": None}, "ignore",
     "its directions are the differences between the models"),
    ({"kind": "file", "file": "d.npz", "normalization": "layer"}, {}, "normalization",
     "its directions are the file's, as they were saved"),
])
def test_shared_settings_a_kind_does_not_use_are_refused_at_load(directions, grid, setting, why):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"grid": grid, "slices": [{"directions": directions}]})
    value = directions[setting]
    assert str(err.value) == (
        f"The 'slices.0.directions.{setting}' setting must be left out for kind "
        f"{directions['kind']!r}, which does not use it ({why}). Got {value!r} instead. Remove "
        f"slices.0.directions.{setting}.")


def test_a_tile_larger_than_a_small_grid_shrinks_to_it():
    grid = GridConfig(x=AxisConfig(points=5), y=AxisConfig(points=3), tile=(4, 8))
    assert grid.tile == (3, 5)
    config = config_from_dict({"grid": {"x": {"points": 5}, "y": {"points": 3}, "tile": [40, 80]}})
    assert config.slices[0].grid.tile == (3, 5)
