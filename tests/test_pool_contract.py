"""One contract, every backend: the in-process pool, the Ray pool and a pool of threads
registered from the tests (``thread_backend``) give the same results through the same
interface, chosen by ``cluster.backend`` alone."""

import json
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from thread_backend import ThreadPool

from landscape_dist.config import config_from_dict
from landscape_dist.config.schema import ClusterConfig
from landscape_dist.core.layout import WeightLayout
from landscape_dist.core.quantities import POINTS
from landscape_dist.execution import Job, Pool, make_pool
from landscape_dist.model.reference import evaluate_per_point, points_to_weights
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.registry import BACKENDS, QUANTITIES

EVALUATION = config_from_dict({}).evaluation
MODEL = ModelSpec.from_source("parabola")
XS, YS = np.linspace(-1.0, 1.0, 4), np.linspace(-0.5, 1.5, 3)
COORDS = np.stack(np.meshgrid(XS, YS), axis=-1).reshape(-1, 2).astype(np.float32)  # (12, 2)


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.ray), "threads"])
def backend(request):
    """The backend's name in BACKENDS; Ray joins the shared test cluster, threads are
    registered for the test only."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    if request.param == "threads":
        BACKENDS.register("threads")(ThreadPool)
        request.addfinalizer(lambda: BACKENDS.remove("threads"))
    return request.param


@pytest.fixture
def plugin(monkeypatch):
    """``squared_norm``, registered by importing ``tests.plugin_quantity`` as a plugin would be;
    unregistered afterwards."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))  # where Ray workers find it too
    module = importlib.import_module("tests.plugin_quantity")
    yield module
    QUANTITIES.remove(module.NAME)
    sys.modules.pop("tests.plugin_quantity", None)


@pytest.fixture(scope="module")
def plane():
    """A seeded plane of the parabola model, and the per-point Keras reference on its grid:
    (centre (size,), directions (2, size), {quantity: values (12,)})."""
    model = MODEL.build()
    layout = WeightLayout.from_variables(model.trainable_variables)
    rng = np.random.default_rng(5)
    centre = layout.flatten([v.numpy() for v in model.trainable_variables])
    directions = (0.05 * rng.standard_normal((2, layout.size))).astype(np.float32)
    x, y = DataSpec("parabola").load()
    weights = points_to_weights(centre, directions, COORDS)
    reference = evaluate_per_point(model, x, y, layout, weights)
    reference["squared_norm"] = np.sum(weights.astype(np.float64) ** 2, axis=1)
    return centre, directions, reference


def _pool(backend, shards=1, quantities=("loss",)):
    cluster = ClusterConfig(backend=backend, num_workers=2, max_tile_retries=2)
    return make_pool(cluster, MODEL, DataSpec("parabola", num_shards=shards), EVALUATION,
                     quantities)


def _run(pool, plane, points_per_job=3, on_each=None):
    """The grid's points in jobs of ``points_per_job``: the keys in the order reported, and
    each quantity over the whole grid (12,)."""
    centre, directions, _ = plane
    pool.set_plane(centre, directions, [])
    jobs = [Job(i, POINTS, COORDS[s:s + points_per_job])
            for i, s in enumerate(range(0, len(COORDS), points_per_job))]
    got = {}

    def on_result(key, result):
        got[key] = result
        if on_each is not None:
            on_each(len(got))

    order = []
    pool.run(jobs, lambda key, result: (order.append(key), on_result(key, result)))
    values = {name: np.concatenate([got[k][name] for k in sorted(got)]) for name in pool.names}
    return order, values


def _assert_reference(values, plane):
    for name, got in values.items():
        np.testing.assert_allclose(got, plane[2][name], rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.slow
def test_a_grid_equals_per_point_keras(backend, plane):
    pool = _pool(backend)
    try:
        assert isinstance(pool, Pool)
        assert pool.names == ("loss",) and pool.num_shards == 1 and pool.sizes == {"": [256]}
        order, values = _run(pool, plane)
        assert sorted(order) == [0, 1, 2, 3]  # each job reported once
        _assert_reference(values, plane)
        assert len(pool.choices()) == pool.num_workers
        if backend != "ray":
            assert pool.call_beside(json.dumps, 1) is None  # the caller does it itself
    finally:
        pool.close()


@pytest.mark.slow
def test_two_shards_combine_exactly(backend, plane):
    pool = _pool(backend, shards=2)
    try:
        assert pool.num_shards == 2 and pool.sizes == {"": [128, 128]}
        order, values = _run(pool, plane)
        assert sorted(order) == [0, 1, 2, 3]
        _assert_reference(values, plane)
    finally:
        pool.close()


@pytest.mark.slow
def test_selected_quantities_change_the_names(backend, plane, plugin):
    pool = _pool(backend, quantities=("loss", plugin.NAME))
    try:
        assert pool.names == ("loss", plugin.NAME)
        pool.select_quantities((plugin.NAME,))
        assert pool.names == (plugin.NAME,)
        _, values = _run(pool, plane)
        assert set(values) == {plugin.NAME}
        _assert_reference(values, plane)
        pool.select_quantities(("loss", plugin.NAME))
        _, values = _run(pool, plane)
        assert set(values) == {"loss", plugin.NAME}
        _assert_reference(values, plane)
        with pytest.raises(ValueError, match="not built for the quantities"):
            pool.select_quantities(("hessian_max",))
    finally:
        pool.close()


def _lose(backend, pool, handle):
    """Lose a worker as a backend can: kill the actor, or the adapter's test hook."""
    if backend == "ray":
        import ray

        ray.kill(handle)
    else:
        pool.backend.lose(handle)


@pytest.mark.slow
def test_a_worker_lost_mid_run_changes_nothing(backend, plane):
    pool = _pool(backend)
    try:
        victim = pool.scheduler.handles[0]
        lose_once = lambda done: done == 1 and _lose(backend, pool, victim)  # noqa: E731
        order, values = _run(pool, plane, points_per_job=1, on_each=lose_once)
        assert sorted(order) == list(range(len(COORDS)))  # every job completed, once
        _assert_reference(values, plane)
        assert pool.replacements == 1
        assert victim not in pool.scheduler.handles and victim not in pool.info
        _, again = _run(pool, plane)  # the replacement has the plane and serves new runs
        _assert_reference(again, plane)
    finally:
        pool.close()
