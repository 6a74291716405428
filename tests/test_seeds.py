"""Several seeds: one slice per seed, each equal to a slice of that seed alone; grouped figures
and numbers across seeds."""

import numpy as np
import pytest

from landscape_dist.config import ConfigError, config_from_dict
from landscape_dist.commands import plot, sweep
from landscape_dist.store.surface import read_surface

GRID_2D = {"x": {"points": 5}, "y": {"points": 5}, "tile": [5, 5]}
GRID_1D = {"x": {"points": 7}, "y": None}


@pytest.mark.slow
def test_seeds_expand_into_slices_equal_to_single_seed_slices(tmp_path):
    config = config_from_dict({"slices": [
        {"name": "r", "directions": {"seeds": [3, 5, 8]}, "grid": GRID_2D},
        {"name": "line", "directions": {"seeds": [1, 2]}, "grid": GRID_1D}]})
    assert [s.name for s in config.slices] == ["r_seed3", "r_seed5", "r_seed8", "line_seed1",
                                               "line_seed2"]
    summary = sweep(config, tmp_path / "all", in_process=True, progress=False)
    grouped = read_surface(tmp_path / "all" / "surface.h5")
    for seed in (3, 5, 8):
        alone = config_from_dict({"slices": [{"name": "r", "directions": {"seed": seed},
                                              "grid": GRID_2D}]})
        sweep(alone, tmp_path / f"s{seed}", in_process=True, progress=False)
        single = read_surface(tmp_path / f"s{seed}" / "surface.h5")["r"]
        np.testing.assert_array_equal(grouped[f"r_seed{seed}"].directions, single.directions)
        np.testing.assert_allclose(grouped[f"r_seed{seed}"].values["loss"], single.values["loss"],
                                   rtol=1e-6)
    group = summary["seed_groups"]["r"]
    assert list(group["slices"]) == ["r_seed3", "r_seed5", "r_seed8"]
    centre = [summary["slices"][f"r_seed{s}"]["numbers"]["loss_at_centre"] for s in (3, 5, 8)]
    assert group["across_seeds"]["loss_at_centre"]["mean"] == pytest.approx(np.mean(centre))
    assert group["across_seeds"]["loss_at_centre"]["std"] == pytest.approx(np.std(centre), abs=1e-12)
    images = [p.rsplit("/", 1)[1] for p in plot(tmp_path / "all" / "surface.h5", tmp_path / "figs")]
    assert images[:2] == ["r_seeds.png", "line_seeds_1d.png"]
    assert (tmp_path / "figs" / "r_seeds.png").read_bytes()[:4] == b"\x89PNG"


def test_seeds_must_be_distinct():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"slices": [{"directions": {"seeds": [1, 1]}}]})
    assert str(err.value) == ("The 'slices.0.directions.seeds' setting must be a list of distinct "
                              "integers. Got [1, 1] instead.")
