"""Failure drills: a worker process killed, a node removed, an error in user code."""

import os
import signal

import numpy as np
import pytest

from drills import AfterTiles
from landscape_dist.config import config_from_dict
from landscape_dist.execution import InProcessPool, Job, RayPool, TileError
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface
from landscape_dist.config.words import SETTING_WORDS


def _config(shape=(12, 9), tile=(1, 9)):
    """12 tiles: after the first comes back, every worker still has or gets jobs to lose."""
    return config_from_dict({
        "model": {"source": "parabola"}, "data": {"source": "parabola"},
        "grid": {"x": {"min": -1.0, "max": 1.0, "points": shape[1]},
                 "y": {"min": -1.0, "max": 1.0, "points": shape[0]}, "tile": list(tile)},
        "slices": [{"name": "random", "directions": {"seed": 4}}],
        "cluster": {"num_workers": 2, "max_tile_retries": 2}})


def _pool(config):
    return RayPool(ModelSpec.from_source("parabola"), DataSpec("parabola"), config.evaluation,
                   config.cluster)


def _assert_equals_undisturbed(config, tmp_path):
    """The drilled sweep in tmp_path/ray equals an undisturbed in-process sweep."""
    pool = InProcessPool(ModelSpec.from_source("parabola"), DataSpec("parabola"), config.evaluation)
    sweep(config, tmp_path / "reference", pool=pool, progress=False)
    ref = read_surface(tmp_path / "reference" / "surface.h5")["random"]
    got = read_surface(tmp_path / "ray" / "surface.h5")["random"]
    assert got.done.all()
    for name, values in ref.values.items():
        np.testing.assert_allclose(got.values[name], values, rtol=1e-6)


@pytest.mark.slow
def test_killed_worker_process_gives_the_undisturbed_grid(ray_cluster, tmp_path):
    config = _config()
    pool = _pool(config)
    victim = next(iter(pool.info))
    pid = pool.info[victim]["pid"]
    try:
        drill = AfterTiles(1, lambda: os.kill(pid, signal.SIGKILL))
        sweep(config, tmp_path / "ray", pool=pool, progress=False, callbacks=[drill])
        assert drill.fired
        assert pool.replacements == 1
        assert pid not in {info["pid"] for info in pool.info.values()}
    finally:
        pool.close()
    _assert_equals_undisturbed(config, tmp_path)


@pytest.mark.slow
def test_removed_node_gives_the_undisturbed_grid(ray_cluster, simulated_cluster, tmp_path):
    config = _config()
    head = ray_cluster.get_runtime_context().get_node_id()
    worker_node = next(n for n in simulated_cluster.worker_nodes)
    pool = _pool(config)
    try:
        nodes = {info["node"] for info in pool.info.values()}
        assert len(nodes) == 2 and head in nodes  # one actor per node
        drill = AfterTiles(1, lambda: simulated_cluster.remove_node(worker_node))
        sweep(config, tmp_path / "ray", pool=pool, progress=False, callbacks=[drill])
        assert drill.fired and pool.replacements == 1
    finally:
        pool.close()
        simulated_cluster.add_node(num_cpus=1)
        simulated_cluster.wait_for_nodes()
    _assert_equals_undisturbed(config, tmp_path)


@pytest.mark.slow
def test_error_in_the_evaluation_is_reported_not_retried(ray_cluster):
    config = _config()
    pool = _pool(config)
    try:
        pool.set_plane(np.zeros(8513, np.float32), np.ones((2, 8513), np.float32), [])
        bad = Job(7, "coords", np.zeros((4, 3), np.float32))  # three coordinates on a 2-D plane
        with pytest.raises(TileError) as err:
            pool.run([bad], lambda key, result: None)
        assert pool.replacements == 0
    finally:
        pool.close()
    message = str(err.value)
    assert message.startswith("Evaluating job 7 failed in user code:")
    assert "\x1b[" not in message  # no terminal colour codes
    assert 'worker.py", line' in message and "in evaluate" in message  # the worker's traceback
    assert "TypeError: Binding inputs to tf.function failed" in message  # the original error


@pytest.mark.slow
def test_data_that_does_not_fit_is_refused_by_the_workers_in_one_line(ray_cluster, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 5), np.float32), y=np.zeros(8, np.float32))
    config = _config()
    with pytest.raises(ValueError) as err:
        RayPool(ModelSpec.from_source("parabola"), DataSpec(str(tmp_path / "d.npz")),
                config.evaluation, config.cluster)
    assert str(err.value) == (
        "The data gives inputs of shape (8, 5), but the model takes (None, 1). "
        "Give data whose examples have shape (1,), or another model.")
    assert str(err.value.reworded(SETTING_WORDS)) == (  # as a sweep names it
        "The 'data.source' setting gives inputs of shape (8, 5), but the model takes (None, 1). "
        "Give data whose examples have shape (1,), or another model.")
