from pathlib import Path

import pytest

from landscape_dist.config import ConfigError, apply_overrides, config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shipped_configs_load():
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = load_config(path)
        if path.stem in ("parabola", "digits"):
            assert [s.name for s in cfg.slices] == ["random", "pca"]
            assert cfg.slices[1].grid.x.auto and not cfg.slices[0].grid.x.auto
    compare = load_config(CONFIGS / "compare.yaml")
    assert [r.seed for r in compare.train.run_settings] == [0, 1]
    assert compare.data.datasets == {"train": "digits_train", "test": "digits_test"}


def test_top_level_grid_is_default_and_slice_grid_overrides():
    cfg = config_from_dict({"grid": {"x": {"points": 11}, "y": {"points": 7}, "tile": [3, 4]},
                            "slices": [{"name": "a"}, {"name": "b", "grid": {"x": {"points": 5}}}]})
    assert cfg.slices[0].grid.shape == (7, 11)
    assert cfg.slices[1].grid.shape == (7, 5)
    assert cfg.slices[1].grid.tile == (3, 4)


def test_one_dimensional_slice():
    cfg = config_from_dict({"grid": {"x": {"points": 9}, "y": None}})
    assert cfg.slices[0].grid.ndim == 1 and cfg.slices[0].grid.shape == (1, 9)


def test_overrides_parse_yaml_values_and_list_items():
    data = apply_overrides({"slices": [{"name": "a"}]},
                           ["grid.x.points=21", "slices.0.directions.seed=5", "cluster.address=auto"])
    cfg = config_from_dict(data)
    assert cfg.slices[0].grid.x.points == 21
    assert cfg.slices[0].directions.seed == 5
    assert cfg.cluster.address == "auto"


@pytest.mark.parametrize("data, message", [
    ({"grid": {"x": {"points": 1}}},
     "The 'grid.x.points' setting must be an integer >= 2. Got 1 instead."),
    ({"grid": {"x": {"points": "ten"}}},
     "The 'grid.x.points' setting must be an integer. Got 'ten' instead."),
    ({"grid": {"x": {"min": 1.0, "max": 1.0}}},
     "The 'grid.x.max' setting must be greater than min=1.0. Got 1.0 instead. Give the axis a "
     "non-empty range."),
    ({"grid": {"tile": [4, 0]}},
     "The 'grid.tile' setting must be two integers >= 1 ([rows, columns]). Got [4, 0] instead."),
    ({"trian": {}}, "Unknown setting 'trian'. Did you mean 'train'?"),
    ({"grid": {"x": {"pionts": 5}}}, "Unknown setting 'grid.x.pionts'. Did you mean 'points'?"),
    ({"slices": [{"directions": {"normalisation": "filter"}}]},
     "Unknown setting 'slices.0.directions.normalisation'. Did you mean 'normalization'?"),
    ({"slices": [{"directions": {"normalization": "unit"}}]},
     "The 'slices.0.directions.normalization' setting must be one of ('filter', 'layer', 'model', "
     "'none'). Got 'unit' instead."),
    ({"cluster": {"num_workers": 0}},
     "The 'cluster.num_workers' setting must be an integer >= 1 or null (automatic). Got 0 "
     "instead."),
    ({"slices": [{"name": "a"}, {"name": "a"}]},
     "The 'slices' setting must be a list of slices with distinct names. Got ['a', 'a'] instead. "
     "Rename the repeated 'a'."),
])
def test_bad_settings_name_the_setting_the_value_and_the_fix(data, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert str(err.value) == message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
