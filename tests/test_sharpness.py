"""Sharpness along training: the top eigenvalues, trace and gradient norm at recorded checkpoints,
against closed forms (least squares trained by gradient descent, Adam's preconditioner) and a
dense Hessian from automatic differentiation; resumed = uninterrupted, 2 shards = 1, Ray once;
bad settings refused in one line."""

import json

import h5py
import numpy as np
import pytest

from landscape_dist.cli import main
from landscape_dist.commands import sharpness
from landscape_dist.config import config_from_dict
from landscape_dist.config.schema import SharpnessConfig
from landscape_dist.core.layout import WeightLayout
from landscape_dist.core.sharpness import (adam_preconditioner, preconditioned, spectra,
                                           stability_threshold)
from landscape_dist.execution import InProcessPool
from landscape_dist.model.trajectory import Trajectory, write_trajectory
from landscape_dist.store.sharpness import read_sharpness

LSQ = ("tests.factories:least_squares_model", "tests.factories:least_squares_data")
MLP = ("tests.factories:small_tanh_model", "tests.factories:small_tanh_data")
LOOP = {"mode": "loop"}  # one Hessian-product method, not both compiled and timed
LSQ_EIGENVALUES = np.array([2 * 144, 2 * 81, 2 * 25, 2 * 6.25, 2 * 64]) / 64  # kernel, bias


def _layout_and_start(source: str):
    from tests.factories import least_squares_model, small_tanh_model

    model = {LSQ[0]: least_squares_model, MLP[0]: small_tanh_model}[source]()
    layout = WeightLayout.from_variables(model.trainable_variables)
    return layout, layout.flatten([v.numpy() for v in model.trainable_variables])


def _record(path, weights, layout, optimizer=None, rate=None, settings=None, state=None):
    """A trajectory file as ``train`` records it: the weights, and (where given) how the run
    was trained: optimiser, its settings, the learning rate per checkpoint, its state."""
    steps = np.arange(len(weights), dtype=np.int64)
    write_trajectory(path, Trajectory(np.asarray(weights, np.float32), steps, steps, layout),
                     unit="step")
    with h5py.File(path, "a") as f:
        if optimizer is not None:
            f.attrs["optimizer"] = optimizer
            f.attrs["optimizer_config"] = json.dumps({"learning_rate": rate, **(settings or {})})
            f.attrs["learning_rate"] = rate
            f["learning_rate"] = np.full(len(weights), rate)
        if state is not None:
            g = f.create_group("optimizer_state")
            g["second_moments"] = state["v"].astype(np.float32)
            g["iterations"] = state["t"].astype(np.int64)
            g.attrs.update({k: state[k] for k in ("beta_1", "beta_2", "epsilon")})
    return path


def _lsq_path(steps: int, eta: float) -> tuple[np.ndarray, WeightLayout]:
    """Full-batch gradient descent on least squares from the model's own weights (float64)."""
    from tests.factories import least_squares_data

    layout, w = _layout_and_start(LSQ[0])
    x, y = least_squares_data()
    a = np.column_stack([x, np.ones(len(x))]).astype(np.float64)  # kernel rows, then the bias
    path = [w.astype(np.float64)]
    for _ in range(steps - 1):
        w = path[-1]
        path.append(w - eta * 2 / len(x) * a.T @ (a @ w - y[:, 0]))
    return np.array(path), layout


def _config(pair, evaluation=None, **sharp):
    return config_from_dict({"model": {"source": pair[0]}, "data": {"source": pair[1]},
                             "evaluation": evaluation or {}, "sharpness": sharp})


@pytest.mark.slow
def test_least_squares_sharpness_is_the_closed_form_against_two_over_eta(tmp_path):
    eta = 0.3
    path, layout = _lsq_path(7, eta)
    _record(tmp_path / "trajectory.h5", path, layout, "SGD", eta, {"momentum": 0.0})
    summary = sharpness(_config(LSQ, LOOP, top_k=2, every=2, batch=3), tmp_path, in_process=True)
    run = read_sharpness(tmp_path / "sharpness.h5")["run0"]
    top2 = np.sort(LSQ_EIGENVALUES)[::-1][:2]
    np.testing.assert_array_equal(run["checkpoint"], [0, 2, 4, 6])
    np.testing.assert_allclose(run["eigenvalues"], np.tile(top2, (4, 1)), rtol=1e-5)
    np.testing.assert_allclose(run["trace"], LSQ_EIGENVALUES.sum(), rtol=1e-5)  # diagonal H
    np.testing.assert_allclose(run["threshold"], 2 / eta)
    assert run["operator"] == "hessian" and run["threshold_formula"] == "2/eta"
    from tests.factories import least_squares_data

    x, y = least_squares_data()
    a = np.column_stack([x, np.ones(len(x))]).astype(np.float64)
    residual = path[[0, 2, 4, 6]] @ a.T - y[:, 0]
    np.testing.assert_allclose(run["quantities"]["loss"], (residual ** 2).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(run["gradient_norm"],
                               np.linalg.norm(2 / len(x) * residual @ a, axis=1), rtol=1e-4)
    assert summary["runs"]["run0"]["threshold"] == "2/eta"
    assert json.loads((tmp_path / "summary.json").read_text())["sharpness"]["runs"]["run0"][
        "checkpoints"] == 4
    assert (tmp_path / "sharpness.png").stat().st_size > 0
    from landscape_dist.figures.sharpness import sharpness_section

    section = sharpness_section(tmp_path / "sharpness.h5", embed_plotly=False)
    assert "<h2>sharpness along training</h2>" in section and "gradient descent: 2/eta" in section


# ---------------------------------------------------------------- the pure core


def test_adam_preconditioner_reproduces_keras_adam_steps(rng):
    import keras

    lr, beta_1, beta_2, eps = 0.01, 0.9, 0.99, 1e-3  # a large epsilon, so where it sits matters
    opt = keras.optimizers.Adam(learning_rate=lr, beta_1=beta_1, beta_2=beta_2, epsilon=eps)
    var = keras.Variable(rng.standard_normal(6).astype(np.float32))
    opt.build([var])
    for t in range(1, 5):
        before = var.numpy().astype(np.float64)
        opt.apply_gradients([(keras.ops.convert_to_tensor(
            rng.standard_normal(6).astype(np.float32) * 10.0 ** -t), var)])
        m, v = (np.asarray(s.numpy(), np.float64) for s in (opt._momentums[0],
                                                             opt._velocities[0]))
        p = adam_preconditioner(v, int(opt.iterations.numpy()), beta_1, beta_2, eps)
        np.testing.assert_allclose(before - var.numpy(), lr * m / p, rtol=2e-4, atol=1e-9)
    assert adam_preconditioner(v, 0, beta_1, beta_2, eps) is None  # no step yet


def test_thresholds_and_the_preconditioned_operator(rng):
    rates = np.array([0.1, 0.05])
    assert stability_threshold("SGD", {}, rates, "hessian").values == pytest.approx([20, 40])
    heavy = stability_threshold("SGD", {"momentum": 0.9}, rates, "hessian")
    assert heavy.values == pytest.approx(3.8 / rates) and heavy.formula == "3.8/eta"
    nesterov = stability_threshold("SGD", {"momentum": 0.5, "nesterov": True}, rates, "hessian")
    assert nesterov.values == pytest.approx(1.5 / rates)
    adam = stability_threshold("Adam", {"beta_1": 0.9}, rates, "preconditioned_hessian")
    assert adam.values == pytest.approx(38 / rates) and adam.formula == "38/eta"
    assert stability_threshold("Adam", {}, rates, "hessian").values is None
    assert stability_threshold(None, {}, None, "hessian").values is None
    h = rng.standard_normal((2, 9, 9))
    h = h + h.transpose(0, 2, 1)
    p = rng.uniform(0.1, 3.0, (2, 9))
    scales = 1 / np.sqrt(p)
    scales[1] = np.nan  # no preconditioner at this checkpoint: NaN, no product asked
    asked = []

    def matvec(v, rows):
        asked.extend(rows)
        return np.einsum("bij,bj->bi", h[rows], v)

    found = spectra(preconditioned(matvec, scales), [np.random.default_rng(i) for i in range(2)],
                    9, 2, 9, 1e-10, 4)
    exact = np.sort(np.linalg.eigvals(h[0] / p[0][:, None]).real)[::-1]  # of P^-1 H itself
    np.testing.assert_allclose(found.values[0], exact[:2], rtol=1e-8)
    assert np.isnan(found.values[1]).all() and np.isnan(found.trace[1]) and 1 not in asked


# ---------------------------------------------------------------- against a dense Hessian


def _dense(weights_rows, layout):
    """Loss (with its L2 penalty), gradient and Hessian of the MLP at each row, by tf."""
    import tensorflow as tf

    from tests.factories import small_tanh_data, small_tanh_model

    model = small_tanh_model()
    x, y = small_tanh_data()
    out = []
    for w in weights_rows:
        flat = tf.Variable(np.asarray(w, np.float32))
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                pieces = [tf.reshape(flat[a:b], s) for a, b, s in
                          zip(layout.offsets[:-1], layout.offsets[1:], layout.shapes)]
                pred, _, losses = model.stateless_call(pieces, [], x, return_losses=True)
                loss = tf.reduce_mean((pred - y) ** 2) + tf.add_n(losses)
            grad = inner.gradient(loss, flat)
        out.append((float(loss), grad.numpy().astype(np.float64),
                    outer.jacobian(grad, flat).numpy().astype(np.float64)))
    return out


def _mlp_path(tmp_path, rng, state: bool):
    layout, w0 = _layout_and_start(MLP[0])
    path = w0 + 0.15 * np.cumsum(rng.standard_normal((3, w0.size)), axis=0) * [[0], [1], [1]]
    moments = {"v": rng.uniform(1e-4, 1e-2, path.shape) * [[0], [1], [1]],
               "t": np.array([0, 5, 40]), "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    _record(tmp_path / "trajectory.h5", path, layout, "Adam", 0.002,
            {"beta_1": 0.9, "beta_2": 0.999}, moments if state else None)
    return path.astype(np.float32), layout, moments


@pytest.mark.slow
def test_mlp_sharpness_equals_the_dense_hessian_plain_and_preconditioned(tmp_path, rng):
    path, layout, moments = _mlp_path(tmp_path, rng, state=True)
    dense = _dense(path, layout)
    first = sharpness(_config(MLP, LOOP, top_k=3, trace_vectors=200, steps=120), tmp_path,
                      in_process=True)["runs"]["run0"]
    pre = read_sharpness(tmp_path / "sharpness.h5")["run0"]
    # the checkpoint before the first step is undefined, not a Lanczos run that failed
    assert first["undefined"] == 1
    assert first["not_converged"] == int(np.sum(~pre["converged"][1:].astype(bool)))
    assert pre["operator"] == "preconditioned_hessian" and pre["threshold_formula"] == "38/eta"
    np.testing.assert_allclose(pre["threshold"], 38 / 0.002)
    assert np.isnan(pre["eigenvalues"][0]).all()  # no step yet: no preconditioner
    for i in (1, 2):
        p = adam_preconditioner(moments["v"][i].astype(np.float32), moments["t"][i], 0.9, 0.999,
                                1e-7)
        d = 1 / np.sqrt(p)
        exact = np.linalg.eigvalsh(d[:, None] * dense[i][2] * d[None, :])[::-1]
        np.testing.assert_allclose(pre["eigenvalues"][i], exact[:3], rtol=1e-4)
        assert abs(pre["trace"][i] - exact.sum()) < 5 * pre["trace_stderr"][i] + 1e-4 * exact[0]
    # the plain Hessian, by setting; the loss, metrics and gradient norm are the same either way
    (tmp_path / "plain").mkdir()
    (tmp_path / "trajectory.h5").rename(tmp_path / "plain" / "trajectory.h5")
    summary = sharpness(_config(MLP, LOOP, top_k=3, trace_vectors=200, steps=120,
                                operator="hessian"), tmp_path / "plain", in_process=True)
    plain = read_sharpness(tmp_path / "plain" / "sharpness.h5")["run0"]
    assert plain["operator"] == "hessian" and np.isnan(plain["threshold"]).all()
    assert "preconditioned" in summary["runs"]["run0"]["threshold_why"]
    for i, (loss, grad, hessian) in enumerate(dense):
        exact = np.linalg.eigvalsh(hessian)[::-1]
        np.testing.assert_allclose(plain["eigenvalues"][i], exact[:3], rtol=1e-4)
        assert abs(plain["trace"][i] - exact.sum()) < 5 * plain["trace_stderr"][i] + 1e-4 * exact[0]
        assert plain["gradient_norm"][i] == pytest.approx(np.linalg.norm(grad), rel=1e-4)
        assert plain["quantities"]["loss"][i] == pytest.approx(loss, rel=1e-5)
        assert pre["quantities"]["loss"][i] == plain["quantities"]["loss"][i]


# ---------------------------------------------------------------- resuming, shards, Ray


class _Interrupting:
    """A pool that is interrupted (as by Ctrl-C) when asked for gradients the ``at``-th time:
    the batches before that one are finished and journalled."""

    def __init__(self, pool, at: int):
        self._pool, self._at, self._seen = pool, at, 0

    def run(self, jobs, on_result, quantities=None):
        jobs = list(jobs)
        if jobs[0].which == "gradient":
            self._seen += 1
            if self._seen == self._at:
                raise KeyboardInterrupt
        return self._pool.run(jobs, on_result, quantities)

    def __getattr__(self, name):
        return getattr(self._pool, name)


def _lsq_pool(shards=1):
    from landscape_dist.config.schema import EvaluationConfig
    from landscape_dist.model.sources import DataSpec, ModelSpec

    return InProcessPool(ModelSpec.from_source(LSQ[0]), DataSpec(LSQ[1], num_shards=shards),
                         EvaluationConfig(**LOOP))


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_numbers_and_refuses_other_settings(tmp_path):
    from landscape_dist.errors import OutputError

    path, layout = _lsq_path(7, 0.3)
    for where in ("whole", "cut"):
        (tmp_path / where).mkdir()
        _record(tmp_path / where / "trajectory.h5", path, layout, "SGD", 0.3)
    config = _config(LSQ, batch=3, trace_vectors=4)
    pool = _lsq_pool()
    sharpness(config, tmp_path / "whole", pool=pool)
    with pytest.raises(KeyboardInterrupt):
        sharpness(config, tmp_path / "cut", pool=_Interrupting(pool, 2))
    assert (tmp_path / "cut" / "sharpness.h5.journal").is_file()
    assert not (tmp_path / "cut" / "sharpness.h5").exists()
    with pytest.raises(OutputError, match=r"another configuration \(sharpness.seed: 0 -> 1\)"):
        sharpness(_config(LSQ, batch=3, trace_vectors=4, seed=1), tmp_path / "cut", pool=pool)
    summary = sharpness(config, tmp_path / "cut", pool=pool)
    assert summary["checkpoints_resumed"] == 3 and summary["checkpoints_computed"] == 4
    whole = read_sharpness(tmp_path / "whole" / "sharpness.h5")["run0"]
    cut = read_sharpness(tmp_path / "cut" / "sharpness.h5")["run0"]
    for key in ("eigenvalues", "trace", "trace_stderr", "gradient_norm", "threshold"):
        np.testing.assert_array_equal(cut[key], whole[key])
    np.testing.assert_array_equal(cut["quantities"]["loss"], whole["quantities"]["loss"])
    assert not (tmp_path / "cut" / "sharpness.h5.journal").exists()


@pytest.mark.slow
def test_two_data_shards_give_the_numbers_of_one(tmp_path, rng):
    _mlp_path(tmp_path, rng, state=False)  # Adam without its state: the plain Hessian
    results = {}
    for shards in (1, 2):
        out = tmp_path / f"shards{shards}"
        out.mkdir()
        (out / "trajectory.h5").write_bytes((tmp_path / "trajectory.h5").read_bytes())
        config = config_from_dict({"model": {"source": MLP[0]}, "data": {"source": MLP[1],
                                                                         "shards": shards},
                                   # one Hessian-product method, not both compiled and timed
                                   "evaluation": {"mode": "loop"},
                                   "sharpness": {"top_k": 2, "trace_vectors": 4, "steps": 40}})
        summary = sharpness(config, out, in_process=True)
        results[shards] = read_sharpness(out / "sharpness.h5")["run0"]
    assert "not recorded" in summary["runs"]["run0"]["operator_why"]
    for key in ("eigenvalues", "trace", "gradient_norm"):
        np.testing.assert_allclose(results[2][key], results[1][key], rtol=2e-5)
    np.testing.assert_allclose(results[2]["quantities"]["loss"], results[1]["quantities"]["loss"],
                               rtol=1e-5)


def test_ray_sharpness_with_a_killed_worker_is_the_closed_form(ray_cluster, tmp_path):
    import os
    import signal

    from landscape_dist.execution import RayPool
    from landscape_dist.model.sources import DataSpec, ModelSpec

    path, layout = _lsq_path(5, 0.3)
    _record(tmp_path / "trajectory.h5", path, layout, "SGD", 0.3, {"momentum": 0.5})
    config = config_from_dict({"model": {"source": LSQ[0]}, "data": {"source": LSQ[1]},
                               "cluster": {"num_workers": 2}, "evaluation": {"mode": "loop"},
                               "sharpness": {"batch": 2, "trace_vectors": 4}})
    pool = RayPool(ModelSpec.from_source(LSQ[0]), DataSpec(LSQ[1]), config.evaluation,
                   config.cluster)
    pid = next(iter(pool.info.values()))["pid"]

    class KillOnce(_Interrupting):
        def run(self, jobs, on_result, quantities=None):
            jobs = list(jobs)
            if jobs[0].which == "gradient" and not self._seen:
                self._seen = 1
                os.kill(pid, signal.SIGKILL)
            return self._pool.run(jobs, on_result, quantities)

    try:
        sharpness(config, tmp_path, pool=KillOnce(pool, 0))
        assert pool.replacements == 1
    finally:
        pool.close()
    run = read_sharpness(tmp_path / "sharpness.h5")["run0"]
    np.testing.assert_allclose(run["eigenvalues"][:, 0], LSQ_EIGENVALUES.max(), rtol=1e-5)
    np.testing.assert_allclose(run["trace"], LSQ_EIGENVALUES.sum(), rtol=1e-5)
    np.testing.assert_allclose(run["threshold"], 3 / 0.3)  # heavy ball 0.5: (2 + 2 beta)/eta


# ---------------------------------------------------------------- bad input


@pytest.mark.slow
@pytest.mark.parametrize("override, message", [
    ("sharpness.every=0", "The 'sharpness.every' setting must be an integer >= 1. Got 0 instead."),
    ("sharpness.top_k=6", "The 'sharpness.top_k' setting must be at most the model's 5 weights "
                          "(its Hessian has 5 eigenvalues). Got 6 instead. Set sharpness.top_k to "
                          "5 or fewer."),
    ("sharpness.runs=[0,2]", "The 'sharpness.runs' setting names run 2, whose training path "
                             "'{out}/trajectory_run2.h5' does not exist. Name recorded runs only, "
                             "or train them ('landscape-dist train' (or 'run'))."),
    (None, "The sharpness needs the training path '{out}/trajectory.h5', which does not exist. "
           "Run 'landscape-dist train' (or 'run') with the same --out first."),
])
def test_bad_settings_and_files_are_refused_in_one_line(tmp_path, capsys, override, message):
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{source: '{LSQ[0]}'}}\ndata: {{source: '{LSQ[1]}'}}\n"
                      f"sharpness: {{}}\n")
    out = tmp_path / "out"
    out.mkdir()
    if override is not None:
        path, layout = _lsq_path(3, 0.1)
        _record(out / "trajectory.h5", path, layout)
    code = main(["sharpness", str(config), "--out", str(out), "--in-process"]
                + ([override] if override else []))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == f"landscape-dist: error: {message.format(out=out)}"
    assert not (out / "sharpness.h5").exists() and not (out / "sharpness.h5.journal").exists()


def test_a_batch_too_large_for_memory_is_refused_before_any_work():
    with pytest.raises(ValueError, match=r"The 'sharpness.batch' setting must be small enough "
                                         r"that the Lanczos vectors of a batch \(sharpness.batch x "
                                         r"sharpness.steps x 10000000 weights"):
        SharpnessConfig(batch=8).check_for(10_000_000)


@pytest.mark.parametrize("settings, message", [
    ({"seed": -1}, "The 'sharpness.seed' setting must be an integer >= 0. Got -1 instead. Give a "
                   "seed of 0 or more."),
    ({"runs": [0, 0]}, "The 'sharpness.runs' setting must be a list of distinct training run "
                       "indices >= 0 (0: the first run), or null for every recorded run. Got "
                       "[0, 0] instead."),
    ({"top_k": 4, "steps": 4}, "The 'sharpness.steps' setting must be greater than "
                               "sharpness.top_k=4. Got 4 instead."),
    ({"operator": "fisher"}, "The 'sharpness.operator' setting must be one of ('auto', "
                             "'hessian'). Got 'fisher' instead."),
])
def test_bad_sharpness_settings_name_the_setting(settings, message):
    with pytest.raises(ValueError) as caught:
        config_from_dict({"sharpness": settings})
    assert str(caught.value) == message


def test_a_directory_held_elsewhere_is_refused_before_anything_is_touched(tmp_path, capsys):
    import os

    from landscape_dist.store.lock import LOCK_NAME

    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{source: '{LSQ[0]}'}}\ndata: {{source: '{LSQ[1]}'}}\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({
        "host": "node-elsewhere-7", "pid": os.getpid(), "ticks": 1, "command": "sweep",
        "started": "2026-12-01 10:00:00 UTC", "token": "0" * 32}))
    assert main(["sharpness", str(config), "--out", str(out), "--in-process"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"landscape-dist: error: The output directory "
                                               f"'{out}' is in use by a landscape-dist sweep")
    assert sorted(os.listdir(out)) == [LOCK_NAME]


def _cli(config_text: str, out, *args) -> tuple[int, list[str]]:
    import io
    from contextlib import redirect_stderr

    config = out.parent / "config.yaml"
    config.write_text(config_text)
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["sharpness", str(config), "--out", str(out), "--in-process", *args])
    return code, err.getvalue().strip().splitlines()


def _adam_state(checkpoints: int, size: int) -> dict:
    return {"v": np.full((checkpoints, size), 0.5), "t": np.arange(checkpoints),
            "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}


@pytest.mark.slow
@pytest.mark.parametrize("name, bad, message", [
    ("second_moments", np.zeros((3, 2), np.float32), "holds 'optimizer_state/second_moments' of "
     "shape (3, 2), but its 3 checkpoints need (3, 5)."),
    ("iterations", np.zeros(2, np.int64), "holds 'optimizer_state/iterations' of shape (2,), but "
     "its 3 checkpoints need (3,)."),
    ("learning_rate", np.zeros(4), "holds 'learning_rate' of shape (4,), but its 3 checkpoints "
     "need (3,)."),
])
def test_a_trajectory_whose_training_record_does_not_fit_is_refused_in_one_line(tmp_path, name,
                                                                                bad, message):
    out = tmp_path / "out"
    out.mkdir()
    path, layout = _lsq_path(3, 0.1)
    file = _record(out / "trajectory.h5", path, layout, "Adam", 0.1, state=_adam_state(3, 5))
    with h5py.File(file, "a") as f:
        where = name if name == "learning_rate" else f"optimizer_state/{name}"
        del f[where]
        f[where] = bad
    code, err = _cli(f"model: {{source: '{LSQ[0]}'}}\ndata: {{source: '{LSQ[1]}'}}\n", out)
    assert code == 2 and err[-1] == (f"landscape-dist: error: The trajectory file '{file}' "
                                     f"{message} Record it again ('landscape-dist train' (or "
                                     f"'run')).")
    assert sorted(p.name for p in out.iterdir()) == ["trajectory.h5"]


@pytest.mark.parametrize("directory, what, args", [
    ("sharpness.h5", "sharpness file", ("--overwrite",)),
    ("sharpness.png", "sharpness figure", ()),
    ("sharpness.h5.journal", "resume journal", ("--overwrite",)),
])
def test_a_directory_where_an_output_file_goes_is_refused_before_any_work(tmp_path, directory,
                                                                          what, args):
    out = tmp_path / "out"
    (out / directory / "kept").mkdir(parents=True)
    code, err = _cli(f"model: {{source: '{LSQ[0]}'}}\ndata: {{source: '{LSQ[1]}'}}\n", out,
                     *args)
    assert code == 2 and err == [f"landscape-dist: error: The {what} '{out / directory}' is a "
                                 f"directory, not a file. Move it away, or give another --out."]
    assert sorted(p.name for p in out.iterdir()) == [directory]
    assert (out / directory / "kept").is_dir()


def test_too_many_trace_vectors_for_memory_are_refused_before_any_work():
    with pytest.raises(ValueError) as caught:
        SharpnessConfig(trace_vectors=10 ** 9).check_for(5)
    assert str(caught.value) == (
        "The 'sharpness.trace_vectors' setting must be small enough that the trace's vectors of "
        "a batch and their products (2 x sharpness.batch x sharpness.trace_vectors x 5 weights x "
        "8 bytes = 596 GiB) fit in 4 GiB. Got 1000000000 instead. Lower "
        "sharpness.trace_vectors or sharpness.batch.")


def test_the_library_call_takes_a_config_or_its_file_and_refuses_anything_else(tmp_path):
    from landscape_dist.errors import SourceError

    with pytest.raises(TypeError) as caught:
        sharpness({"sharpness": {}}, tmp_path)
    assert str(caught.value) == ("The 'config' argument must be a Config (ld.load_config(...)) or "
                                 "the path of a YAML file. Got dict instead.")
    config = tmp_path / "config.yaml"
    config.write_text(f"model: {{source: '{LSQ[0]}'}}\ndata: {{source: '{LSQ[1]}'}}\n")
    with pytest.raises(SourceError, match="The sharpness needs the training path"):
        sharpness(str(config), tmp_path, in_process=True)  # the file was read: the path is next
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_learning_rate_decayed_to_zero_has_no_threshold():
    # a cosine schedule ends at 0 (alpha 0): no step size bounds the sharpness there
    for optimizer, settings, operator in (("SGD", {}, "hessian"),
                                          ("SGD", {"momentum": 0.9, "nesterov": True}, "hessian"),
                                          ("Adam", {"beta_1": 0.9}, "preconditioned_hessian")):
        with np.errstate(all="raise"):
            found = stability_threshold(optimizer, settings, [0.5, 0.0], operator)
        assert np.isnan(found.values[1]) and np.isfinite(found.values[0])
