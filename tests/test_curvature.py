"""Curvature: Lanczos core, Hessian products on workers, the analysis at the centre, eigenvalue
maps and Hessian directions, each against an independent reference (closed form or a dense
Hessian from automatic differentiation)."""

import json
import os
import signal

import h5py
import numpy as np
import pytest

from landscape_dist.config import CurvatureConfig, EvaluationConfig, config_from_dict
from landscape_dist.core.lanczos import (hutchinson, lanczos, quadrature, rademacher, ritz_pairs,
                                         spectral_density, extreme_eigenvalues)
from landscape_dist.core.curvature import analyse, layer_groups
from landscape_dist.execution.products import PoolHessian
from landscape_dist.execution import InProcessPool, RayPool
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface

LSQ = ("tests.factories:least_squares_model", "tests.factories:least_squares_data")
MLP = ("tests.factories:small_tanh_model", "tests.factories:small_tanh_data")


# ---------------------------------------------------------------- the pure core

def _symmetric(rng, n):
    a = rng.standard_normal((n, n))
    return (a + a.T) / 2


def test_batched_lanczos_finds_each_problems_extremes_and_eigenvectors(rng):
    mats = np.stack([_symmetric(rng, 30) for _ in range(3)])
    calls = []

    def matvec(vectors, rows):
        calls.append(len(rows))
        return np.einsum("bij,bj->bi", mats[rows], vectors)

    result = lanczos(matvec, rng.standard_normal((3, 30)), 30, tol=1e-12, keep_basis=True)
    top, bottom = extreme_eigenvalues(result)
    exact = np.linalg.eigvalsh(mats)
    np.testing.assert_allclose(top, exact[:, -1], rtol=1e-10)
    np.testing.assert_allclose(bottom, exact[:, 0], rtol=1e-10)
    assert max(calls) == 3 and len(calls) <= 30  # one call per step for all problems
    values, vectors = ritz_pairs(result, 3, b=1)
    np.testing.assert_allclose(values, exact[1, ::-1][:3], rtol=1e-10)
    for value, vector in zip(values, vectors):
        np.testing.assert_allclose(mats[1] @ vector, value * vector, atol=1e-8)
        assert vector[np.argmax(np.abs(vector))] > 0  # the fixed sign
    low, low_vec = ritz_pairs(result, 1, b=2, largest=False)
    np.testing.assert_allclose(mats[2] @ low_vec[0], low[0] * low_vec[0], atol=1e-8)


def test_quadrature_is_exact_for_polynomials_and_the_density_integrates_to_one(rng):
    h = _symmetric(rng, 40)
    starts = rademacher(rng, (2, 40))
    steps = 6
    result = lanczos(lambda v, rows: v @ h, starts, steps)
    nodes, weights = quadrature(result)
    for p in range(2 * steps):  # Gauss quadrature: exact up to degree 2m - 1
        exact = np.einsum("bi,ij,bj->b", starts, np.linalg.matrix_power(h, p), starts) / 40
        np.testing.assert_allclose((weights * nodes ** p).sum(axis=1), exact, rtol=1e-8, atol=1e-8)
    grid = np.linspace(nodes.min() - 3, nodes.max() + 3, 4001)
    density = spectral_density(nodes, weights, grid, sigma=0.2)
    assert abs(np.trapezoid(density, grid) - 1.0) < 1e-6


def test_hutchinson_is_exact_on_a_diagonal_matrix(rng):
    d = rng.uniform(-1, 3, 50)
    v = rademacher(rng, (7, 50))
    estimate, stderr = hutchinson(np.einsum("bi,i,bi->b", v, d, v))
    assert estimate == pytest.approx(d.sum(), rel=1e-12) and stderr == pytest.approx(0, abs=1e-12)


# ---------------------------------------------------------------- references

MAP = ("loss", "hessian_max", "hessian_min")


def _pool(model, data, shards=1, quantities=("loss",), **evaluation):
    return InProcessPool(ModelSpec.from_source(model), DataSpec(data, num_shards=shards),
                         EvaluationConfig(**evaluation), quantities=quantities)


def _centre(pool):
    ev = pool.workers[0].evaluator
    return ev.layout.flatten([v.numpy() for v in ev.model.trainable_variables])


def _dense_hessian(evaluator, weights):
    """The Hessian of the evaluator's loss at ``weights`` by automatic differentiation."""
    import tensorflow as tf

    w = tf.constant(np.asarray(weights, np.float32))
    with tf.GradientTape() as outer:
        outer.watch(w)
        with tf.GradientTape() as inner:
            inner.watch(w)
            loss = evaluator.objective(w, evaluator.non_trainable_at())
        grad = inner.gradient(loss, w)
    return outer.jacobian(grad, w).numpy().astype(np.float64)


def _least_squares_hessian():
    from tests.factories import least_squares_data

    x, _ = least_squares_data()
    a = np.column_stack([x.astype(np.float64), np.ones(len(x))])
    return 2.0 / len(x) * a.T @ a


def _at_centre(pool):
    centre = _centre(pool)
    pool.set_plane(centre, np.zeros((1, centre.size), np.float32),
                   [v.numpy() for v in pool.workers[0].evaluator.model.non_trainable_variables])
    return centre


CFG = CurvatureConfig(top_k=4, trace_vectors=60, density_vectors=3, density_steps=5, seed=2)


@pytest.mark.slow
def test_least_squares_eigenvalues_trace_layers_and_map_equal_the_closed_form(tmp_path):
    exact = np.linalg.eigvalsh(_least_squares_hessian())
    pool = _pool(*LSQ, mode="loop")  # one Hessian-product method, not both compiled and timed
    _at_centre(pool)
    result = analyse(PoolHessian(pool), pool.workers[0].evaluator.layout, CFG)
    np.testing.assert_allclose(result["eigen"].top_values, exact[::-1][:4], rtol=1e-5)
    assert result["eigen"].min_value == pytest.approx(exact[0], rel=1e-5)
    estimate, stderr, _ = result["trace"]  # a diagonal Hessian: every Rademacher sample is exact
    assert estimate == pytest.approx(exact.sum(), rel=1e-5) and stderr < 1e-5 * exact.sum()
    names, values, _ = result["layers"]
    assert names == ["linear"] and values[0] == pytest.approx(exact[-1], rel=1e-5)
    config = config_from_dict({
        "model": {"source": LSQ[0]}, "data": {"source": LSQ[1]},
        "grid": {"x": {"min": -2.0, "max": 2.0, "points": 3},
                 "y": {"min": -2.0, "max": 2.0, "points": 3}, "tile": [2, 2]},
        "slices": [{"name": "map", "directions": {"seed": 1},
                    "quantities": ["loss", "hessian_max", "hessian_min"]}],
        "evaluation": {"mode": "loop"}})
    summary = sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["map"]
    np.testing.assert_allclose(surface.values["hessian_max"], exact[-1], rtol=1e-5)
    np.testing.assert_allclose(surface.values["hessian_min"], exact[0], rtol=1e-5)
    assert summary["slices"]["map"]["hessian_max_range"] == pytest.approx([exact[-1]] * 2, rel=1e-5)


@pytest.mark.slow
def test_mlp_curvature_equals_the_dense_hessian():
    # one Hessian-product method, not both compiled and timed: the vectorised one here, the
    # compiled loop against the dense Hessian in test_sharpness
    pool = _pool(*MLP, mode="vectorized")
    centre = _at_centre(pool)
    evaluator = pool.workers[0].evaluator
    dense = _dense_hessian(evaluator, centre)
    exact = np.linalg.eigvalsh(dense)
    cfg = CurvatureConfig(top_k=5, trace_vectors=100, density_vectors=2, density_steps=4, seed=0)
    result = analyse(PoolHessian(pool), evaluator.layout, cfg)
    scale = exact[-1]
    np.testing.assert_allclose(result["eigen"].top_values, exact[::-1][:5], atol=1e-4 * scale)
    assert abs(result["eigen"].min_value - exact[0]) < 1e-4 * scale
    for value, vector in zip(result["eigen"].top_values, result["eigen"].top_vectors):
        np.testing.assert_allclose(dense @ vector, value * vector, atol=1e-3 * scale)
    estimate, stderr, _ = result["trace"]
    assert abs(estimate - np.trace(dense)) < 3 * stderr
    names, values, _ = result["layers"]
    groups = layer_groups(evaluator.layout)
    assert names == [n for n in groups] and len(names) == 3
    for name, value in zip(names, values):
        block = dense[np.ix_(groups[name], groups[name])]
        assert value == pytest.approx(np.linalg.eigvalsh(block)[-1], abs=1e-4 * scale)


@pytest.mark.slow
def test_eigenvalue_map_points_equal_the_dense_hessian_at_their_weights():
    from landscape_dist.model.quantities import HessianExtremes

    pool = _pool(*MLP, memory_budget_mb=2.0)  # forces several products calls and Lanczos groups
    centre = _centre(pool)
    directions = np.random.default_rng(3).standard_normal((2, centre.size)).astype(np.float32) * 0.2
    evaluator = pool.workers[0].evaluator
    evaluator.set_plane(centre, directions)
    coords = np.array([[0.0, 0.0], [1.0, -0.5], [-0.7, 0.9]])
    kind = HessianExtremes(evaluator, ("hessian_max", "hessian_min"), EvaluationConfig())
    got = kind.compute("coords", coords)
    for i, c in enumerate(coords):
        exact = np.linalg.eigvalsh(_dense_hessian(evaluator, evaluator.weights_at(c[None])[0]))
        assert got["hessian_max"][i] == pytest.approx(exact[-1], abs=1e-4 * exact[-1])
        assert got["hessian_min"][i] == pytest.approx(exact[0], abs=1e-4 * exact[-1])
    assert kind.products.method in ("loop", "vectorized") and set(kind.products.timings) == {
        "loop", "vectorized"}


@pytest.mark.slow
def test_sharded_products_and_curvature_equal_the_unsharded():
    # one Hessian-product method, not both compiled and timed
    whole, halves = _pool(*MLP, mode="loop"), _pool(*MLP, shards=2, mode="loop")
    _at_centre(whole), _at_centre(halves)
    v = np.random.default_rng(0).standard_normal((5, _centre(whole).size))
    np.testing.assert_allclose(PoolHessian(halves)(v), PoolHessian(whole)(v), rtol=2e-5, atol=2e-5)
    layout = whole.workers[0].evaluator.layout
    cfg = CurvatureConfig(top_k=3, trace_vectors=10, density_vectors=2, density_steps=4,
                          per_layer=False)
    a, b = analyse(PoolHessian(whole), layout, cfg), analyse(PoolHessian(halves), layout, cfg)
    np.testing.assert_allclose(a["eigen"].top_values, b["eigen"].top_values, rtol=1e-5)
    assert a["trace"][0] == pytest.approx(b["trace"][0], rel=1e-4, abs=1e-4)


def _map_config(**extra):
    return config_from_dict({
        "model": {"source": MLP[0]}, "data": {"source": MLP[1]},
        "grid": {"x": {"min": -1.0, "max": 1.0, "points": 4},
                 "y": {"min": -1.0, "max": 1.0, "points": 4}, "tile": [1, 4]},
        "slices": [{"name": "map", "directions": {"seed": 2},
                    "quantities": ["loss", "hessian_max", "hessian_min"]}],
        "cluster": {"num_workers": 2, "max_tile_retries": 2}, **extra})


@pytest.mark.slow
def test_ray_products_and_a_map_with_a_killed_worker_equal_in_process(ray_cluster, tmp_path):
    from drills import AfterTiles

    config = _map_config(evaluation={"mode": "loop"})  # one Hessian-product method, not both timed
    local = _pool(*MLP, quantities=MAP, mode="loop")
    sweep(config, tmp_path / "local", pool=local, progress=False)
    pool = RayPool(ModelSpec.from_source(MLP[0]), DataSpec(MLP[1]), config.evaluation,
                   config.cluster, quantities=MAP)
    try:
        centre = _at_centre(local)
        pool.set_plane(centre, np.zeros((1, centre.size), np.float32), [])
        v = np.random.default_rng(1).standard_normal((4, centre.size))
        np.testing.assert_allclose(PoolHessian(pool)(v), PoolHessian(local)(v), rtol=1e-5, atol=1e-6)
        pid = next(iter(pool.info.values()))["pid"]
        drill = AfterTiles(1, lambda: os.kill(pid, signal.SIGKILL))
        sweep(config, tmp_path / "ray", pool=pool, progress=False, callbacks=[drill])
        assert drill.fired and pool.replacements == 1
    finally:
        pool.close()
    ref = read_surface(tmp_path / "local" / "surface.h5")["map"]
    got = read_surface(tmp_path / "ray" / "surface.h5")["map"]
    assert got.done.all()
    for name in ("loss", "hessian_max", "hessian_min"):
        np.testing.assert_allclose(got.values[name], ref.values[name], rtol=1e-5)


# ---------------------------------------------------------------- Hessian directions

class _Stop(Exception):
    pass


@pytest.mark.slow
def test_hessian_directions_are_the_dense_eigenvectors_and_resume_from_the_journal(tmp_path, monkeypatch):
    from landscape_dist.callbacks import SweepCallback

    config = config_from_dict({
        "model": {"source": MLP[0]}, "data": {"source": MLP[1]},
        "grid": {"x": {"min": -0.5, "max": 0.5, "points": 3},
                 "y": {"min": -0.5, "max": 0.5, "points": 4}, "tile": [1, 3]},
        "slices": [{"name": "hess", "directions": {"kind": "hessian", "which": ["top1", "min"]}}],
        "evaluation": {"mode": "loop"}})  # one Hessian-product method, not both compiled and timed

    class StopAfterOne(SweepCallback):
        def on_tile_end(self, name, tile, result):
            raise _Stop

    with pytest.raises(_Stop):
        sweep(config, tmp_path, in_process=True, progress=False, callbacks=[StopAfterOne()])
    assert (tmp_path / "surface.h5.journal").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("the directions were computed again instead of read back")

    monkeypatch.setattr("landscape_dist.execution.products.PoolHessian.__call__", refuse)
    summary = sweep(config, tmp_path, in_process=True, progress=False)
    assert summary["slices"]["hess"]["tiles_resumed"] == 1
    surface = read_surface(tmp_path / "surface.h5")["hess"]
    pool = _pool(*MLP)
    evaluator = pool.workers[0].evaluator
    values, vectors = np.linalg.eigh(_dense_hessian(evaluator, _centre(pool)))
    scale = values[-1]
    for got, value, vector in zip(surface.directions, (values[-1], values[0]),
                                  (vectors[:, -1], vectors[:, 0])):
        assert abs(np.dot(got, vector)) == pytest.approx(1.0, abs=1e-4)
        assert got[np.argmax(np.abs(got))] > 0
    np.testing.assert_allclose(surface.meta["eigenvalues"], [values[-1], values[0]],
                               atol=1e-4 * scale)
    assert surface.meta["converged"] is True and surface.meta["which"] == ["top1", "min"]


# ---------------------------------------------------------------- settings and the command

@pytest.mark.parametrize("change, message", [
    ({"slices": [{"name": "s", "quantities": ["hessian_max"]}]},
     "The 'slices.0.quantities' setting must be a list of distinct names from ('loss', "
     "'hessian_max', 'hessian_min'), 'loss' among them. Got ['hessian_max'] instead."),
    ({"slices": [{"name": "s", "directions": {"kind": "hessian", "which": ["top0"]}}]},
     "The 'slices.0.directions.which' setting must be one or two distinct names of eigenvectors: "
     "'top1', 'top2'... (largest eigenvalues first) or 'min' (the smallest). Got ['top0'] instead."),
    ({"curvature": {"top_k": 8, "steps": 8}},
     "The 'curvature.steps' setting must be greater than curvature.top_k=8. Got 8 instead."),
    ({"evaluation": {"lanczos_tol": 2.0}},
     "The 'evaluation.lanczos_tol' setting must be a number between 0 and 1 (a relative "
     "tolerance). Got 2.0 instead."),
])
def test_bad_curvature_settings_are_named(change, message):
    with pytest.raises(ValueError) as err:
        config_from_dict(change)
    assert str(err.value) == message


def test_eigenvalue_maps_with_data_shards_are_refused_before_work(tmp_path):
    config = _map_config(data={"source": MLP[1], "shards": 2})
    with pytest.raises(ValueError) as err:
        sweep(config, tmp_path, in_process=True, progress=False)
    assert str(err.value) == (
        "The 'slices.0.quantities' setting asks for ['hessian_max', 'hessian_min'], which are not "
        "combined from shards of the data (every Lanczos step needs the whole product); "
        "data.shards is 2. Set data.shards=1, or sweep those quantities in a configuration of "
        "their own.")
    assert not any(tmp_path.iterdir())


def test_curvature_command_writes_a_readable_file_and_refuses_to_replace_it(tmp_path, capsys):
    from landscape_dist.cli import main
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"source": LSQ[0]}, "data": {"source": LSQ[1]},
        "curvature": {"top_k": 2, "trace_vectors": 8, "density_vectors": 2, "density_steps": 4}}))
    out = tmp_path / "out"
    assert main(["curvature", str(cfg), "--out", str(out), "--in-process", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    exact = np.linalg.eigvalsh(_least_squares_hessian())
    with h5py.File(out / "curvature.h5") as f:
        np.testing.assert_allclose(f["eigen/top_values"][()], exact[::-1][:2], rtol=1e-5)
        assert f["eigen/top_vectors"].shape == (2, 5)
        assert f["eigen/min_value"][()] == pytest.approx(exact[0], rel=1e-5)
        assert f["trace/quadratic_forms"].shape == (8,)
        assert f["density/nodes"].shape == (2, 4)
        assert [n.decode() for n in f["layers/names"][()]] == ["linear"]
        assert json.loads(f.attrs["summary"])["top_eigenvalues"] == printed["top_eigenvalues"]
    assert json.loads((out / "summary.json").read_text())["curvature"]["products"] == printed["products"]
    assert (out / "curvature_density.png").stat().st_size > 10_000
    assert main(["curvature", str(cfg), "--out", str(out), "--in-process"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"The curvature file '{out / 'curvature.h5'}' exists. Pass --overwrite to replace it, or "
        f"give another --out.")


@pytest.mark.slow
def test_eigenvalue_maps_on_several_datasets_are_kept_and_drawn_per_dataset(tmp_path):
    from landscape_dist.commands import plot

    exact = np.linalg.eigvalsh(_least_squares_hessian())
    config = config_from_dict({
        "model": {"source": LSQ[0]}, "data": {"source": {"a": LSQ[1], "b": LSQ[1]}},
        "grid": {"x": {"points": 3}, "y": {"points": 3}, "tile": [3, 3]},
        "slices": [{"name": "m", "quantities": ["loss", "hessian_max", "hessian_min"]}],
        "evaluation": {"mode": "loop"}})  # one Hessian-product method, not both compiled and timed
    summary = sweep(config, tmp_path, in_process=True, progress=False)["slices"]["m"]
    for dataset in ("a", "b"):
        assert summary[f"{dataset}/hessian_max_range"] == pytest.approx([exact[-1]] * 2, rel=1e-5)
        assert summary[f"{dataset}/hessian_min_range"] == pytest.approx([exact[0]] * 2, rel=1e-5)
    names = {os.path.basename(p) for p in plot(tmp_path / "surface.h5")}
    assert {"m_a_hessian.png", "m_b_hessian.png"} <= names
