"""Several datasets per sweep: each quantity per dataset, equal to separate sweeps; shards split
each dataset; Li et al.'s root datasets; figures side by side with the generalisation gap."""

import h5py
import numpy as np
import pytest

from landscape_dist.config import config_from_dict
from landscape_dist.execution import InProcessPool, RayPool
from landscape_dist.model.sources import ModelSpec
from landscape_dist.commands import plot, sweep
from landscape_dist.store.surface import read_surface

GRID = {"x": {"points": 3}, "y": {"points": 3}, "tile": [3, 3]}


def _config(source, shards=1, workers=1):
    return config_from_dict({"model": {"source": "digits"}, "data": {"source": source, "shards": shards},
                             "grid": GRID, "slices": [{"name": "r", "directions": {"seed": 6}}],
                             "cluster": {"num_workers": workers}})


@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    """Each split swept on its own."""
    out = {}
    for split in ("train", "test"):
        folder = tmp_path_factory.mktemp(split)
        sweep(_config(f"digits_{split}"), folder, in_process=True, progress=False)
        out[split] = read_surface(folder / "surface.h5")["r"]
    return out


def _check(surface, separate):
    assert set(surface.values) == {"train/loss", "train/accuracy", "test/loss", "test/accuracy"}
    for split in ("train", "test"):
        for name in ("loss", "accuracy"):
            np.testing.assert_allclose(surface.values[f"{split}/{name}"],
                                       separate[split].values[name], rtol=1e-5)


@pytest.mark.slow
def test_several_datasets_equal_separate_sweeps(tmp_path, separate):
    config = _config({"train": "digits_train", "test": "digits_test"})
    summary = sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["r"]
    _check(surface, separate)
    assert surface.loss_name == "train/loss" and surface.datasets == ["train", "test"]
    assert summary["slices"]["r"]["numbers"]["loss_at_centre"] == surface.values["train/loss"][1, 1]
    with h5py.File(tmp_path / "surface.h5", "r") as f:  # the layout Li et al.'s scripts read
        np.testing.assert_array_equal(f["test_loss"][...], surface.values["test/loss"])
        np.testing.assert_allclose(f["test_acc"][...], 100 * surface.values["test/accuracy"])
        np.testing.assert_array_equal(f["train_loss"][...], surface.values["train/loss"])
    images = [p.rsplit("/", 1)[1] for p in plot(tmp_path / "surface.h5", tmp_path)]
    assert "r_datasets.png" in images


@pytest.mark.slow
def test_shards_split_each_dataset(tmp_path, separate):
    config = _config({"train": "digits_train", "test": "digits_test"}, shards=3)
    pool = InProcessPool(ModelSpec.from_source("digits"),
                         {k: s for k, s in _data_specs(config).items()}, config.evaluation)
    assert pool.sizes == {"train": [400, 400, 400], "test": [199, 199, 199]}
    sweep(config, tmp_path, pool=pool, progress=False)
    _check(read_surface(tmp_path / "surface.h5")["r"], separate)


def shard_or_whole_data(shard=None, num_shards=None):
    """30 examples x = 0..29, y = 2x when asked for a shard; asked for everything, other values
    (-1): a shard cut from a whole load cannot pass for the shard itself."""
    if shard is None:
        return np.full((30, 1), -1.0, np.float32), np.full(30, -1.0, np.float32)
    start, stop = shard * 30 // num_shards, (shard + 1) * 30 // num_shards
    x = np.arange(start, stop, dtype=np.float32)[:, None]
    return x, 2.0 * x[:, 0]


def test_each_dataset_reads_only_its_shards_rows(tmp_path):
    """A directory of .npy files is memory-mapped and a factory asked for its shard: a shard
    allocates its own rows only (not the whole array, then a slice), and gets its own values."""
    import tracemalloc

    folder = tmp_path / "big"
    folder.mkdir()
    rows, width = 4000, 500  # 8 MB of inputs
    np.save(folder / "x.npy", np.arange(rows * width, dtype=np.float32).reshape(rows, width))
    np.save(folder / "y.npy", np.arange(rows, dtype=np.float32))
    sources = {"big": str(folder), "made": "tests.test_datasets:shard_or_whole_data"}
    config = config_from_dict({"model": {"source": "digits"}, "grid": GRID,
                               "data": {"source": sources, "shards": 4}})
    specs = _data_specs(config)
    assert set(specs) == {"big", "made"}
    whole = rows * width * 4
    for shard in range(4):
        tracemalloc.start()
        try:
            x, y = specs["big"].load(shard)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert x.shape == (1000, width) and peak < 0.4 * whole, (shard, peak)
        np.testing.assert_array_equal(y, np.arange(shard * 1000, (shard + 1) * 1000))
        np.testing.assert_array_equal(x[:, 0], y * width)
        x, y = specs["made"].load(shard)
        np.testing.assert_array_equal(x[:, 0], np.arange(shard * 30 // 4, (shard + 1) * 30 // 4))


def _data_specs(config):
    from landscape_dist.sweeping.inputs import data_specs as _data_spec

    return _data_spec(config)


@pytest.mark.slow
def test_several_datasets_on_ray_workers(ray_cluster, tmp_path, separate):
    config = _config({"train": "digits_train", "test": "digits_test"}, shards=2, workers=2)
    pool = RayPool(ModelSpec.from_source("digits"), _data_specs(config), config.evaluation,
                   config.cluster)
    try:
        sweep(config, tmp_path, pool=pool, progress=False)
    finally:
        pool.close()
    _check(read_surface(tmp_path / "surface.h5")["r"], separate)
