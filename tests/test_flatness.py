"""Flatness at the centre: the gradient job, and each flatness measure against its closed form on
a quadratic loss (NumPy quadratics for the pure core; linear least squares on the pool, whose loss
is exactly a quadratic in its weights, through the ``curvature`` command)."""

import itertools
import json

import h5py
import numpy as np
import pytest

from landscape_dist.config import EvaluationConfig, config_from_dict
from landscape_dist.config.sections import FlatnessConfig
from landscape_dist.core.flatness import adaptive_sharpness, epsilon_sharpness, pac_bayes_sigma
from landscape_dist.execution import InProcessPool, RayPool
from landscape_dist.execution.products import PoolGradient, PoolLoss
from landscape_dist.model.sources import DataSpec, ModelSpec

LSQ = ("tests.factories:least_squares_model", "tests.factories:least_squares_data")
MLP = ("tests.factories:small_tanh_model", "tests.factories:small_tanh_data")


# ---------------------------------------------------------------- NumPy quadratics

class Quadratic:
    """L(w) = 1/2 (w - w*)^T A (w - w*) + c, with its gradient."""

    def __init__(self, a, w_star, c):
        self.a, self.w_star, self.c = np.asarray(a, float), np.asarray(w_star, float), float(c)

    def value_and_grad(self, rows):
        d = np.atleast_2d(rows) - self.w_star
        return 0.5 * np.einsum("bi,ij,bj->b", d, self.a, d) + self.c, d @ self.a

    def losses(self, rows):
        return self.value_and_grad(rows)[0]

    def best_vertex(self, w, radius):
        """max over the vertices of the box |z_i| <= radius_i of L(w + z) - L(w)."""
        signs = np.array(list(itertools.product([-1.0, 1.0], repeat=len(w))))
        return float(self.losses(w + signs * radius).max() - self.losses(w[None])[0])


def _quadratic(n, seed=1):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, n))
    return Quadratic(b @ b.T + 0.1 * np.eye(n), rng.standard_normal(n), 0.3), rng


@pytest.mark.parametrize("at_minimum", [True, False])
def test_epsilon_sharpness_is_the_best_vertex_of_the_box(at_minimum):
    q, rng = _quadratic(3)
    w = q.w_star if at_minimum else q.w_star + rng.standard_normal(3)
    for eps in (1e-2, 0.3):
        got = epsilon_sharpness(q.value_and_grad, w, eps, iterations=10, starts=4,
                                rng=np.random.default_rng(0))
        best = q.best_vertex(w, eps * (np.abs(w) + 1))  # a convex function peaks at a vertex
        assert got.increase == pytest.approx(best, rel=1e-9)
        assert got.value == pytest.approx(100 * best / (1 + q.losses(w[None])[0]), rel=1e-9)
        assert np.all(np.abs(got.perturbation) <= eps * (np.abs(w) + 1) * (1 + 1e-12))


def test_adaptive_sharpness_l2_at_the_minimum_is_rho_squared_half_lambda_max():
    q, _ = _quadratic(4)
    rho, eta = 0.5, 0.01
    t = np.abs(q.w_star) + eta
    lam = np.linalg.eigvalsh(t[:, None] * q.a * t[None, :])[-1]
    got = adaptive_sharpness(q.value_and_grad, q.w_star, rho, 2.0, eta, iterations=60)
    assert got.value == pytest.approx(rho ** 2 / 2 * lam, rel=1e-6)
    assert np.linalg.norm(got.perturbation / t) == pytest.approx(rho, rel=1e-9)


def test_adaptive_sharpness_l2_with_a_gradient_solves_the_trust_region_problem():
    from scipy.optimize import brentq

    q, rng = _quadratic(4, seed=3)
    w = q.w_star + 0.3 * rng.standard_normal(4)
    rho, eta = 0.4, 0.0
    t = np.abs(w) + eta
    m, b = t[:, None] * q.a * t[None, :], t * q.value_and_grad(w[None])[1][0]
    # the maximiser of d^T M d / 2 + b^T d on ||d|| <= rho: d = (mu I - M)^-1 b, mu > lambda_max
    values, vectors = np.linalg.eigh(m)
    beta = vectors.T @ b
    mu = brentq(lambda mu: np.linalg.norm(beta / (mu - values)) - rho, values[-1] + 1e-12,
                values[-1] + np.linalg.norm(b) / rho + 1.0)
    d = vectors @ (beta / (mu - values))
    exact = 0.5 * d @ m @ d + b @ d
    got = adaptive_sharpness(q.value_and_grad, w, rho, 2.0, eta, iterations=200)
    assert got.value == pytest.approx(exact, rel=1e-6)


def test_adaptive_sharpness_inf_is_the_best_vertex_of_the_scaled_box():
    q, rng = _quadratic(3, seed=4)
    w = q.w_star + rng.standard_normal(3)
    rho, eta = 0.2, 0.01
    got = adaptive_sharpness(q.value_and_grad, w, rho, np.inf, eta, iterations=20, starts=8,
                             rng=np.random.default_rng(2))
    assert got.value == pytest.approx(q.best_vertex(w, rho * (np.abs(w) + eta)), rel=1e-9)


def _sigma_tolerance(trace, spread_sq, samples, tol):
    """Relative tolerance on sigma from the Monte Carlo error: the mean of ``samples`` values of
    z^T D z (D = A scaled by the variances) has the standard deviation sqrt(2 tr(D^2) / n), and
    sigma goes with its inverse square root; 5 standard deviations plus the bisection's width."""
    return 5 * 0.5 * np.sqrt(2 * spread_sq / samples) / trace + tol


def test_pac_bayes_sigma_matches_the_trace_closed_form():
    q, _ = _quadratic(6, seed=5)
    deviation, samples, tol = 0.1, 400, 0.01
    got = pac_bayes_sigma(q.losses, q.w_star, deviation, samples, seed=3, tol=tol)
    # E[L(w* + u)] - L(w*) = sigma^2 / 2 tr(A) for u ~ N(0, sigma^2 I)
    exact = np.sqrt(2 * deviation / np.trace(q.a))
    rel = _sigma_tolerance(np.trace(q.a), np.trace(q.a @ q.a), samples, tol)
    assert got.sigma == pytest.approx(exact, rel=rel) and got.bracketed
    assert got.deviation_at_sigma <= deviation < got.deviation_above
    assert got.sigma_above / got.sigma <= 1 + tol
    assert got.measure == pytest.approx(1 / got.sigma ** 2)


def test_magnitude_aware_pac_bayes_sigma_matches_its_closed_form():
    q, _ = _quadratic(6, seed=6)
    deviation, samples, tol, floor = 0.1, 400, 0.01, 1e-3
    w = q.w_star
    got = pac_bayes_sigma(q.losses, w, deviation, samples, seed=4, magnitude=True, floor=floor,
                          tol=tol)
    # u_i ~ N(0, sigma^2 w_i^2 + floor^2): E = 1/2 sum_i A_ii (sigma^2 w_i^2 + floor^2)
    diag = np.diag(q.a)
    exact = np.sqrt((2 * deviation - floor ** 2 * diag.sum()) / (diag * w ** 2).sum())
    scaled = np.sqrt(np.abs(w))[:, None] * q.a * np.sqrt(np.abs(w))[None, :] * exact
    rel = _sigma_tolerance((diag * w ** 2).sum() * exact, np.trace(scaled @ scaled), samples, tol)
    assert got.sigma == pytest.approx(exact, rel=rel)


def test_a_loss_that_never_rises_enough_gives_a_lower_bound():
    got = pac_bayes_sigma(lambda rows: np.tanh(np.sum(np.atleast_2d(rows) ** 2, axis=1)) * 0.05,
                          np.zeros(3), 0.1, 8)
    assert not got.bracketed and got.sigma > 1e10


@pytest.mark.parametrize("settings, message", [
    ({"measures": ["sharpness"]}, "The 'curvature.flatness.measures' setting must be a list of "
     "distinct names among ['epsilon_sharpness', 'adaptive_sharpness', 'adaptive_sharpness_inf', "
     "'pac_bayes', 'pac_bayes_magnitude']. Got ['sharpness'] instead."),
    ({"measures": []}, "The 'curvature.flatness.measures' setting must be a list of distinct "
     "names among"),
    ({"epsilon": 0}, "The 'curvature.flatness.epsilon' setting must be a number > 0. Got 0.0 "
     "instead."),
    ({"rho": -0.5}, "The 'curvature.flatness.rho' setting must be a number > 0. Got -0.5 instead."),
    ({"eta": -1}, "The 'curvature.flatness.eta' setting must be a number >= 0. Got -1.0 instead."),
    ({"samples": 1}, "The 'curvature.flatness.samples' setting must be an integer >= 2. Got 1 "
     "instead."),
    ({"iterations": 0}, "The 'curvature.flatness.iterations' setting must be an integer >= 1."),
    ({"tol": 1.5}, "The 'curvature.flatness.tol' setting must be a number between 0 and 1"),
    ({"deviation": ".nan"}, "The 'curvature.flatness.deviation' setting must be a number."),
    ({"epsilonn": 1}, "curvature.flatness.epsilonn"),
])
def test_bad_flatness_settings_are_refused_in_one_line(settings, message):
    with pytest.raises(ValueError) as err:
        config_from_dict({"curvature": {"flatness": settings}})
    assert str(err.value).startswith(message) or message in str(err.value)
    assert "\n" not in str(err.value)


def test_flatness_is_off_unless_asked():
    assert config_from_dict({"curvature": {}}).curvature.flatness is None
    cfg = config_from_dict({"curvature": {"flatness": {}}}).curvature.flatness
    assert cfg == FlatnessConfig() and cfg.measures == ("epsilon_sharpness", "adaptive_sharpness",
                                                        "pac_bayes")


# ---------------------------------------------------------------- the gradient job

def _pool(model, data, shards=1, evaluation=None):
    return InProcessPool(ModelSpec.from_source(model), DataSpec(data, num_shards=shards),
                         evaluation or EvaluationConfig(), quantities=("loss",))


def _at(pool, centre):
    pool.set_plane(centre, np.zeros((1, centre.size), np.float32),
                   [v.numpy() for v in pool.workers[0].evaluator.model.non_trainable_variables])


def _tape(evaluator, weights):
    """Loss (data + L2 penalty) and gradient of the MLP at ``weights`` by tf.GradientTape on the
    Keras model itself."""
    import tensorflow as tf

    from tests.factories import small_tanh_data

    x, y = small_tanh_data()
    model = evaluator.model
    model.set_weights(evaluator.layout.unflatten(np.asarray(weights, np.float32)))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=False) - y)) + tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    return float(loss), np.concatenate([np.ravel(g) for g in grads])


@pytest.mark.slow
def test_gradient_job_equals_gradient_tape_and_two_shards_equal_one():
    whole, halves = _pool(*MLP), _pool(*MLP, shards=2)
    ev = whole.workers[0].evaluator
    centre = ev.layout.flatten([v.numpy() for v in ev.model.trainable_variables])
    _at(whole, centre)
    _at(halves, centre)
    rows = centre + 0.2 * np.random.default_rng(0).standard_normal((3, centre.size))
    loss, grad = PoolGradient(whole)(rows)
    loss2, grad2 = PoolGradient(halves)(rows)
    assert loss.shape == (3,) and grad.shape == (3, centre.size)
    for i, row in enumerate(rows):
        ref_loss, ref_grad = _tape(ev, row)
        assert loss[i] == pytest.approx(ref_loss, rel=1e-5)
        np.testing.assert_allclose(grad[i], ref_grad, rtol=1e-4, atol=1e-5 * np.abs(ref_grad).max())
    np.testing.assert_allclose(loss2, loss, rtol=1e-5)
    np.testing.assert_allclose(grad2, grad, rtol=1e-4, atol=1e-5 * np.abs(grad).max())
    np.testing.assert_allclose(PoolLoss(halves)(rows), loss, rtol=1e-5)  # the grid's own loss


def other_data():
    """A second dataset for the MLP, unlike its own."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((30, 3)).astype(np.float32)
    return x, (x[:, :1] ** 2).astype(np.float32)


@pytest.mark.slow
def test_on_several_datasets_products_and_gradients_are_the_first_datasets():
    from landscape_dist.execution.products import PoolHessian

    loop = EvaluationConfig(mode="loop")  # one Hessian-product method, not both compiled and timed
    whole = _pool(*MLP, evaluation=loop)
    several = InProcessPool(ModelSpec.from_source(MLP[0]),
                            {"train": DataSpec(MLP[1], num_shards=2),
                             "test": DataSpec("tests.test_flatness:other_data")},
                            loop, quantities=("loss",))
    ev = whole.workers[0].evaluator
    centre = ev.layout.flatten([v.numpy() for v in ev.model.trainable_variables])
    _at(whole, centre)
    _at(several, centre)
    rows = centre + 0.1 * np.random.default_rng(2).standard_normal((2, centre.size))
    for got, ref in zip(PoolGradient(several)(rows), PoolGradient(whole)(rows)):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(PoolLoss(several)(rows), PoolLoss(whole)(rows), rtol=1e-5)
    np.testing.assert_allclose(PoolHessian(several)(rows), PoolHessian(whole)(rows), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.slow
def test_ray_gradient_and_loss_equal_in_process(ray_cluster):
    from landscape_dist.config import ClusterConfig

    local = _pool(*MLP)
    ev = local.workers[0].evaluator
    centre = ev.layout.flatten([v.numpy() for v in ev.model.trainable_variables])
    _at(local, centre)
    pool = RayPool(ModelSpec.from_source(MLP[0]), DataSpec(MLP[1], num_shards=2),
                   EvaluationConfig(), ClusterConfig(num_workers=2), quantities=("loss",))
    try:
        pool.set_plane(centre, np.zeros((1, centre.size), np.float32), [])
        rows = centre + 0.1 * np.random.default_rng(1).standard_normal((5, centre.size))
        loss, grad = PoolGradient(pool)(rows)
        ref_loss, ref_grad = PoolGradient(local)(rows)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5 * np.abs(ref_grad).max())
        np.testing.assert_allclose(PoolLoss(pool)(rows), ref_loss, rtol=1e-5)
    finally:
        pool.close()


# ---------------------------------------------------------------- the command, least squares

def _least_squares():
    """The least-squares loss as a quadratic in the 5 weights (4 kernel entries, the bias)."""
    from tests.factories import least_squares_data

    x, y = least_squares_data()
    a = np.column_stack([x.astype(np.float64), np.ones(len(x))])
    y = y[:, 0].astype(np.float64)
    w_star = np.linalg.lstsq(a, y, rcond=None)[0]
    residual = a @ w_star - y
    return Quadratic(2.0 / len(x) * a.T @ a, w_star, np.mean(residual ** 2))


@pytest.mark.slow
def test_curvature_command_flatness_equals_the_closed_forms_on_least_squares(tmp_path):
    from landscape_dist.commands import curvature
    from tests.factories import least_squares_model

    q = _least_squares()
    w = q.w_star + np.array([0.3, -0.2, 0.1, 0.05, -0.4])  # off the minimum: a gradient
    model = least_squares_model()
    model.set_weights([w[:4, None].astype(np.float32), w[4:].astype(np.float32)])
    model.save_weights(tmp_path / "centre.weights.h5")
    w = np.concatenate([model.get_weights()[0].ravel(), model.get_weights()[1]]).astype(float)
    flat = {"measures": ["epsilon_sharpness", "adaptive_sharpness_inf", "pac_bayes"],
            "epsilon": 0.05, "rho": 0.1, "starts": 6, "iterations": 15, "samples": 200}
    config = config_from_dict({
        "model": {"source": LSQ[0], "centre": str(tmp_path / "centre.weights.h5")},
        "data": {"source": LSQ[1]},
        "curvature": {"top_k": 2, "steps": 6, "trace_vectors": 2, "density_vectors": 1,
                      "density_steps": 3, "per_layer": False, "flatness": flat}})
    summary = curvature(config, tmp_path, in_process=True)["flatness"]
    loss0 = q.losses(w[None])[0]
    eps = q.best_vertex(w, 0.05 * (np.abs(w) + 1))
    assert summary["epsilon_sharpness"]["loss"] == pytest.approx(loss0, rel=1e-5)
    assert summary["epsilon_sharpness"]["value"] == pytest.approx(100 * eps / (1 + loss0), rel=1e-3)
    inf = q.best_vertex(w, 0.1 * (np.abs(w) + 0.01))
    assert summary["adaptive_sharpness_inf"]["value"] == pytest.approx(inf, rel=1e-3)
    # E[L(w + u)] - L(w) = sigma^2 / 2 tr(A), the gradient's term averaging out: its Monte Carlo
    # part, sigma g.z_mean, adds to the tolerance
    trace = np.trace(q.a)
    exact = np.sqrt(2 * 0.1 / trace)
    g = q.value_and_grad(w[None])[1][0]
    rel = (_sigma_tolerance(trace, np.trace(q.a @ q.a), 200, 0.01)
           + 5 * np.linalg.norm(g) / np.sqrt(200) * exact / (0.2))
    assert summary["pac_bayes"]["sigma"] == pytest.approx(exact, rel=rel)
    assert summary["pac_bayes"]["value"] == pytest.approx(1 / summary["pac_bayes"]["sigma"] ** 2)
    with h5py.File(tmp_path / "curvature.h5") as f:
        group = f["flatness/epsilon_sharpness"]
        assert group.attrs["value"] == summary["epsilon_sharpness"]["value"]
        assert "Keskar" in group.attrs["source"] and group["perturbation"].shape == (5,)
        assert f["flatness/pac_bayes/trials"].shape[1] == 2
    stored = json.loads((tmp_path / "summary.json").read_text())["curvature"]
    assert stored["flatness"]["pac_bayes"]["sigma"] == summary["pac_bayes"]["sigma"]


def test_diverged_points_are_counted_and_left_out_of_the_maximum():
    q, _ = _quadratic(4)
    w = q.w_star.copy()

    def beyond(rows):  # the loss overflows wherever the first weight moved up
        loss, grad = q.value_and_grad(rows)
        return np.where(np.atleast_2d(rows)[:, 0] > w[0], np.inf, loss), grad

    radius = 0.2 * (np.abs(w) + 0.01)
    found = adaptive_sharpness(beyond, w, 0.2, np.inf, 0.01, iterations=6, starts=8,
                               rng=np.random.default_rng(0))
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=3)))
    down = np.column_stack([-np.ones(len(signs)), signs]) * radius  # z_0 < 0: finite vertices
    best_finite = float(q.losses(w + down).max() - q.losses(w[None])[0])
    assert found.diverged > 0 and found.perturbation[0] <= 0
    assert 0 < found.value <= best_finite + 1e-12
    everywhere = epsilon_sharpness(lambda r: (np.where(np.any(r != w, axis=1), np.inf, 0.0),
                                              np.zeros_like(r)), w, 0.1, iterations=3, starts=2)
    assert everywhere.value == 0.0 and everywhere.diverged == everywhere.evaluations - 1 > 0


# ---------------------------------------------------------------- bad input through the CLI


def _curvature_cli(tmp_path, *args) -> tuple[int, list[str]]:
    import io
    from contextlib import redirect_stderr

    from landscape_dist.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{source: '{LSQ[0]}'}}\ndata: {{source: '{LSQ[1]}'}}\n")
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["curvature", str(config), "--out", str(tmp_path / "out"), "--in-process",
                     "curvature.top_k=1", *args])
    return code, err.getvalue().strip().splitlines()


@pytest.mark.slow
def test_an_adaptive_ascent_too_large_for_memory_is_refused_before_any_work(tmp_path):
    (tmp_path / "out").mkdir()
    code, err = _curvature_cli(tmp_path, "curvature.flatness={measures: [adaptive_sharpness], "
                                         "starts: 100000000}")
    assert code == 2 and err[-1] == (
        "landscape-dist: error: The 'curvature.flatness.starts' setting must be small enough "
        "that the adaptive sharpness's points and gradients (4 x curvature.flatness.starts x 5 "
        "weights x 8 bytes = 14.9 GiB) fit in 4 GiB. Got 100000000 instead. Lower "
        "curvature.flatness.starts.")
    assert list((tmp_path / "out").iterdir()) == []
    # many starts of the other measures keep nothing of that size
    FlatnessConfig(measures=("epsilon_sharpness", "pac_bayes"), starts=10 ** 8).check_for(5)


@pytest.mark.parametrize("directory, what, args", [
    ("curvature.h5", "curvature file", ("--overwrite",)),
    ("curvature_density.png", "curvature figure", ()),
])
def test_a_directory_where_an_output_file_goes_is_refused_before_any_work(tmp_path, directory,
                                                                          what, args):
    out = tmp_path / "out"
    (out / directory / "kept").mkdir(parents=True)
    code, err = _curvature_cli(tmp_path, *args)
    assert code == 2 and err == [f"landscape-dist: error: The {what} '{out / directory}' is a "
                                 f"directory, not a file. Move it away, or give another --out."]
    assert sorted(p.name for p in out.iterdir()) == [directory]
    assert (out / directory / "kept").is_dir()


def test_the_library_call_takes_a_config_or_its_file_and_refuses_anything_else(tmp_path):
    from landscape_dist.commands import curvature

    with pytest.raises(TypeError) as caught:
        curvature(None, tmp_path)
    assert str(caught.value) == ("The 'config' argument must be a Config (ld.load_config(...)) or "
                                 "the path of a YAML file. Got NoneType instead.")
    (tmp_path / "curvature.h5").write_text("kept")
    config = tmp_path / "config.yaml"
    config.write_text("curvature: {top_k: 1}\n")
    with pytest.raises(ValueError, match="The curvature file '.*curvature.h5' exists"):
        curvature(config, tmp_path, in_process=True)  # the file was read: the target is next
    assert (tmp_path / "curvature.h5").read_text() == "kept"
