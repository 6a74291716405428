"""The Ray driver on a simulated two-node cluster: equal to in-process and per-point evaluation,
whatever workers or tiles."""

import numpy as np
import pytest

from landscape_dist.callbacks import TileLog
from landscape_dist.config import ClusterConfig, config_from_dict
from landscape_dist.execution import InProcessPool, RayPool
from landscape_dist.model.reference import evaluate_per_point, points_to_weights
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface


def _config(source, shape=(5, 7), tile=(2, 3), workers=2):
    return config_from_dict({
        "model": {"source": source}, "data": {"source": source},
        "grid": {"x": {"min": -1.0, "max": 1.0, "points": shape[1]},
                 "y": {"min": -0.5, "max": 1.5, "points": shape[0]}, "tile": list(tile)},
        "slices": [{"name": "random", "directions": {"seed": 2}}],
        "cluster": {"num_workers": workers}})


def _surface(config, tmp_path, pool, name="random"):
    log = TileLog()
    sweep(config, tmp_path, pool=pool, progress=False, callbacks=[log])
    return read_surface(tmp_path / "surface.h5")[name], log


def _pool(config):
    return RayPool(ModelSpec.from_source(config.model.source), DataSpec(config.data.source),
                   config.evaluation, config.cluster)


def test_loopback_only(ray_cluster):
    assert {n["NodeManagerAddress"] for n in ray_cluster.nodes()} == {"127.0.0.1"}


@pytest.mark.slow
@pytest.mark.parametrize("source", ["parabola", "digits"])
def test_ray_grid_equals_in_process_and_per_point_keras(ray_cluster, tmp_path, source):
    config = _config(source, shape=(3, 4) if source == "digits" else (5, 7))
    pool = _pool(config)
    assert len({info["node"] for info in pool.info.values()}) == 2  # one worker on each node
    try:
        ray_surface, log = _surface(config, tmp_path / "ray", pool)
    finally:
        pool.close()
    local = InProcessPool(ModelSpec.from_source(source), DataSpec(source), config.evaluation)
    local_surface, _ = _surface(config, tmp_path / "local", local)
    assert ray_surface.done.all()
    assert sorted(i for _, i, _ in log.tiles) == list(range(len(log.tiles)))
    for name, values in ray_surface.values.items():
        np.testing.assert_allclose(values, local_surface.values[name], rtol=1e-6)
    # independent reference: set the weights of a fresh model and call evaluate at every point
    model = ModelSpec.from_source(source).build()
    x, y = DataSpec(source).load()
    xs, ys = ray_surface.xcoordinates, ray_surface.ycoordinates
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    coords = np.stack([xx.ravel(), yy.ravel()], axis=1)
    ref = evaluate_per_point(model, x, y, ray_surface.layout,
                             points_to_weights(ray_surface.centre, ray_surface.directions, coords))
    for name in ref:
        np.testing.assert_allclose(ray_surface.values[name].ravel(), ref[name], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_grid_is_the_same_whatever_workers_and_tiles(ray_cluster, tmp_path):
    results = []
    for workers, tiles in ((2, [(2, 3), (5, 1)]), (1, [(4, 7), (1, 1)])):
        pool = _pool(_config("parabola", workers=workers))  # one pool serves several sweeps
        try:
            for tile in tiles:
                config = _config("parabola", tile=tile, workers=workers)
                surface, log = _surface(config, tmp_path / f"{workers}-{tile}", pool)
                assert len(log.tiles) == len({t for _, t, _ in log.tiles})
                results.append(surface.values["loss"])
        finally:
            pool.close()
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-6)


def test_pool_larger_than_the_cluster_is_refused(ray_cluster):
    from landscape_dist.execution.cluster import check_resources

    with pytest.raises(ValueError) as err:
        check_resources(ClusterConfig(num_workers=3, cpus_per_worker=1.0))
    assert str(err.value) == (
        "The 'cluster.num_workers' setting asks for 3 CPUs in all (3 workers x 1), but the Ray "
        "cluster has 2. Lower cluster.num_workers or cluster.cpus_per_worker.")
    with pytest.raises(ValueError, match="asks for 1 GPUs in all"):
        check_resources(ClusterConfig(num_workers=1, gpus_per_worker=1.0))


@pytest.mark.slow
def test_wait_cluster_returns_once_the_nodes_are_there_and_says_when_they_are_not(
        ray_cluster, simulated_cluster):
    from landscape_dist.execution.cluster import wait_for_cluster

    got = wait_for_cluster(simulated_cluster.address, nodes=2, timeout_s=10)
    assert got["nodes"] == 2 and got["resources"]["CPU"] == 2
    with pytest.raises(ValueError) as err:
        wait_for_cluster(simulated_cluster.address, nodes=3, timeout_s=1)
    assert str(err.value) == (f"The Ray cluster at {simulated_cluster.address!r} has 2 of the 3 "
                              f"nodes asked for after 1 s. Check the workers' logs, or wait longer "
                              f"(the 'timeout_s' parameter).")
    assert ray_cluster.is_initialized()  # the session's connection is kept
    with pytest.raises(ValueError) as err:
        wait_for_cluster("127.0.0.1:9", nodes=1, timeout_s=1)
    assert str(err.value) == ("The Ray head at '127.0.0.1:9' did not answer within 1 s. Check the "
                              "head's log, or wait longer (the 'timeout_s' parameter).")
