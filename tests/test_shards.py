"""Data shards: a sharded sweep equals the unsharded one; shards load lazily on workers."""

import numpy as np
import pytest

from landscape_dist.config import ClusterConfig, config_from_dict
from landscape_dist.execution import InProcessPool, RayPool
from landscape_dist.execution.cluster import actor_resources
from landscape_dist.core.quantities import Part, QuantitySet
from landscape_dist.core.shards import shard_bounds
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface
from landscape_dist.config.words import SETTING_WORDS


def _digits_subset(tmp_path, n=301):
    """An uneven number of digits examples as a directory of .npy files (memory-mapped)."""
    from landscape_dist.model.examples import digits_data

    x, y = digits_data()
    folder = tmp_path / "digits_npy"
    folder.mkdir()
    np.save(folder / "x.npy", x[:n])
    np.save(folder / "y.npy", y[:n])
    return str(folder)


def _config(source, model, shards, workers=None, cpus=1.0):
    return config_from_dict({
        "model": {"source": model}, "data": {"source": source, "shards": shards},
        "grid": {"x": {"min": -1.0, "max": 1.0, "points": 4},
                 "y": {"min": -1.0, "max": 1.0, "points": 3}, "tile": [2, 2]},
        "slices": [{"name": "random", "directions": {"seed": 3}}],
        "cluster": {"num_workers": workers, "cpus_per_worker": cpus}})


def test_shard_bounds_cover_the_data_once():
    for n in (1, 7, 301):
        for s in range(1, min(n, 6) + 1):
            bounds = [shard_bounds(n, s, i) for i in range(s)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_combine_adds_regularisation_once():
    parts = [{"loss_data": np.array([1.0]), "regularization": np.array([0.5]), "accuracy": np.array([1.0])},
             {"loss_data": np.array([4.0]), "regularization": np.array([0.5]), "accuracy": np.array([0.0])}]
    described = QuantitySet((Part("loss_data", "mean", False), Part("regularization", "first", False),
                             Part("accuracy", "mean")), sums=(("loss", ("loss_data", "regularization")),))
    out = described.combine(parts, [1, 3])
    assert described.names == ("loss", "accuracy") and set(out) == {"loss", "accuracy"}
    np.testing.assert_allclose(out["loss"], [(1 * 1 + 4 * 3) / 4 + 0.5])
    np.testing.assert_allclose(out["accuracy"], [0.25])


def test_shard_loading_reads_only_its_rows(tmp_path):
    source = _digits_subset(tmp_path)
    x_all, y_all = DataSpec(source).load()
    pieces = [DataSpec(source, num_shards=3).load(i) for i in range(3)]
    assert [len(p[0]) for p in pieces] == [100, 100, 101]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pieces]), x_all)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pieces]), y_all)
    with pytest.raises(ValueError, match=r"The 'num_shards' parameter is 400, more than the 301 examples"):
        DataSpec(source, num_shards=400).load(0)


def test_factory_is_asked_for_its_shard_only(tmp_path):
    spec = DataSpec("tests.factories:sharded_data", num_shards=3)
    x, y = spec.load(2)
    np.testing.assert_array_equal(x[:, 0], np.arange(20, 30))


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory):
    """The digits subset and its unsharded in-process sweep, which the sharded ones must equal:
    (source, the slice)."""
    tmp_path = tmp_path_factory.mktemp("unsharded")
    source = _digits_subset(tmp_path)
    config = _config(source, "digits", 1)
    pool = InProcessPool(ModelSpec.from_source("digits"), DataSpec(source), config.evaluation)
    sweep(config, tmp_path / "ref", pool=pool, progress=False)
    return source, read_surface(tmp_path / "ref" / "surface.h5")["random"]


@pytest.mark.slow
@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_sweep_equals_the_unsharded_one_in_process(tmp_path, shards, unsharded):
    source, ref = unsharded
    config = _config(source, "digits", shards)
    pool = InProcessPool(ModelSpec.from_source("digits"), DataSpec(source, num_shards=shards),
                         config.evaluation)
    sweep(config, tmp_path / str(shards), pool=pool, progress=False)
    got = read_surface(tmp_path / str(shards) / "surface.h5")["random"]
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(got.values[name], ref.values[name], rtol=1e-6)


@pytest.mark.slow
def test_sharded_sweep_on_ray_equals_the_unsharded_one(ray_cluster, tmp_path, unsharded):
    source, ref = unsharded
    for shards in (2, 3):  # three workers of half a CPU each fit the two-CPU cluster
        config = _config(source, "digits", shards, workers=shards, cpus=0.5)
        pool = RayPool(ModelSpec.from_source("digits"), DataSpec(source, num_shards=shards),
                       config.evaluation, config.cluster)
        try:
            assert sorted(pool.shard_of.values()) == list(range(shards))
            assert pool.sizes == {"": [301 // shards + (i >= shards - 301 % shards)
                                       for i in range(shards)]}
            sweep(config, tmp_path / f"ray{shards}", pool=pool, progress=False)
        finally:
            pool.close()
        got = read_surface(tmp_path / f"ray{shards}" / "surface.h5")["random"]
        for name in ("loss", "accuracy"):
            np.testing.assert_allclose(got.values[name], ref.values[name], rtol=1e-6)


def test_fewer_workers_than_shards_is_refused(ray_cluster):
    config = _config("parabola", "parabola", 3, workers=2)
    with pytest.raises(ValueError) as err:
        RayPool(ModelSpec.from_source("parabola"), DataSpec("parabola", num_shards=3),
                config.evaluation, config.cluster)
    assert str(err.value.reworded(SETTING_WORDS)) == (
        "The 'cluster.num_workers' setting is 2, fewer than the 'data.shards' setting (3): each "
        "shard needs a worker. Raise cluster.num_workers or use fewer shards.")


def test_gpu_resource_requests():
    workstation = {"CPU": 32.0, "GPU": 4.0}
    auto = ClusterConfig().resolve(workstation)  # one actor per GPU by default
    assert (auto.num_workers, auto.gpus_per_worker) == (4, 1.0)
    assert actor_resources(auto) == {"num_cpus": 1.0, "num_gpus": 1.0}
    half = ClusterConfig(gpus_per_worker=0.5).resolve(workstation)  # fractions share a GPU
    assert (half.num_workers, actor_resources(half)["num_gpus"]) == (8, 0.5)
    cpu_only = ClusterConfig(cpus_per_worker=2.0).resolve({"CPU": 8.0})
    assert (cpu_only.num_workers, actor_resources(cpu_only)["num_gpus"]) == (4, 0.0)
    fixed = ClusterConfig(num_workers=2, gpus_per_worker=0.0).resolve(workstation)
    assert (fixed.num_workers, fixed.gpus_per_worker) == (2, 0.0)  # the CPU path, unchanged
