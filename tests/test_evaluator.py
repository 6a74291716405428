"""The compiled evaluator against Keras's own per-point evaluation (set weights, evaluate)."""

from dataclasses import replace

import numpy as np
import pytest

from landscape_dist.core.directions import random_directions
from landscape_dist.model.evaluator import LandscapeEvaluator
from landscape_dist.model.strategy import Strategy, intra_op_threads
from landscape_dist.model.folding import foldable_pairs
from landscape_dist.model.reference import evaluate_per_point, points_to_weights
from landscape_dist.model.sources import DataSpec, ModelSpec


def _setup(source, data_source=None, train_epochs=0):
    model = ModelSpec.from_source(source).build()
    x, y = DataSpec(data_source or source).load()
    if train_epochs:  # moves batch-norm statistics away from their initial values
        model.fit(x, y, epochs=train_epochs, batch_size=32, verbose=0, shuffle=False)
    evaluator = LandscapeEvaluator(model, x, y)
    centre = evaluator.layout.flatten([v.numpy() for v in model.trainable_variables])
    directions = random_directions(centre, evaluator.layout, 2, np.random.default_rng(3))
    evaluator.set_plane(centre, directions)
    coords = np.random.default_rng(4).uniform(-1, 1, size=(6, 2)).astype(np.float32)
    coords[0] = 0.0
    return model, x, y, evaluator, centre, directions, coords


def _assert_matches_per_point(model, x, y, evaluator, centre, directions, coords):
    got = evaluator.evaluate(coords)
    ref = evaluate_per_point(model, x, y, evaluator.layout, points_to_weights(centre, directions, coords))
    assert set(ref) == set(got)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-7)
    return got


@pytest.mark.parametrize("source, data, epochs", [
    ("parabola", None, 0),
    ("digits", None, 0),
    ("tests.factories:bn_dropout_model", "tests.factories:bn_dropout_data", 2),
    ("tests.factories:wide_sequential_model", "tests.factories:wide_sequential_data", 2),
])
def test_fast_path_equals_per_point_keras_evaluation(source, data, epochs):
    model, x, y, ev, centre, directions, coords = _setup(source, data, epochs)
    got = _assert_matches_per_point(model, x, y, ev, centre, directions, coords)
    if source != "parabola":
        assert "accuracy" in got


@pytest.mark.parametrize("source, data", [
    ("parabola", None), ("tests.factories:bn_dropout_model", "tests.factories:bn_dropout_data")])
def test_vectorised_and_loop_paths_agree(source, data):
    model, x, y, ev, centre, directions, coords = _setup(source, data)
    loop = LandscapeEvaluator(model, x, y, mode="loop").set_plane(centre, directions)
    vec = LandscapeEvaluator(model, x, y, mode="vectorized").set_plane(centre, directions)
    a, b = vec.evaluate(coords), loop.evaluate(coords)
    assert vec.method == "vectorized" and loop.method == "loop"
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5)


def test_auto_mode_falls_back_to_a_loop_for_convolutions():
    model, x, y, ev, centre, directions, coords = _setup("digits")
    ev.evaluate(coords[:2])
    assert ev.method == "loop"


def test_results_do_not_depend_on_points_per_call_or_batch_size():
    model, x, y, ev, centre, directions, coords = _setup("parabola")
    small = LandscapeEvaluator(model, x, y, batch_size=50, memory_budget_mb=0.5).set_plane(centre, directions)
    assert small.points_per_call < len(coords) or small.batch_size == 50
    np.testing.assert_allclose(small.evaluate(coords)["loss"], ev.evaluate(coords)["loss"], rtol=1e-5)


def test_weights_entry_point_equals_coordinates_entry_point():
    model, x, y, ev, centre, directions, coords = _setup("parabola")
    by_coords = ev.evaluate(coords)["loss"]
    by_weights = ev.evaluate_weights(points_to_weights(centre, directions, coords))["loss"]
    np.testing.assert_allclose(by_weights, by_coords, rtol=1e-5)


def test_one_dimensional_plane():
    model, x, y, ev, centre, directions, coords = _setup("parabola")
    ev.set_plane(centre, directions[:1])
    got = ev.evaluate(coords[:, :1])["loss"]
    ref = evaluate_per_point(model, x, y, ev.layout, points_to_weights(centre, directions[:1], coords[:, :1]))
    np.testing.assert_allclose(got, ref["loss"], rtol=1e-5)


@pytest.mark.parametrize("source, data, applies", [
    ("digits", None, True),  # conv 3x3x1: fan-in 9 > 3
    ("tests.factories:wide_sequential_model", "tests.factories:wide_sequential_data", True),
    ("parabola", None, False),  # Dense on 1 input: fan-in 1, nothing to save
    ("tests.factories:bn_dropout_model", "tests.factories:bn_dropout_data", False),  # functional
])
def test_first_layer_shortcut_equals_the_full_forward_pass(source, data, applies):
    model, x, y, ev, centre, directions, coords = _setup(source, data, train_epochs=1)
    assert (ev.shortcut is not None) == applies
    full = LandscapeEvaluator(model, x, y, shortcut=False).set_plane(centre, directions)
    assert full.shortcut is None
    a, b = ev.evaluate(coords), full.evaluate(coords)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7)
    ev.set_plane(centre, directions[::-1])  # a new plane refreshes the precomputed pre-activations
    full.set_plane(centre, directions[::-1])
    np.testing.assert_allclose(ev.evaluate(coords)["loss"], full.evaluate(coords)["loss"], rtol=1e-6)
    tiny = LandscapeEvaluator(model, x, y, memory_budget_mb=1e-3).set_plane(centre, directions)
    assert tiny.shortcut is None  # the pre-activations must fit in the memory budget


@pytest.mark.slow
def test_a_loop_may_take_calls_larger_than_the_budget_but_weight_vectors_never_do(monkeypatch):
    model, x, y, ev, centre, directions, coords = _setup("parabola")
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)), -1).reshape(-1, 2)
    budget = 16 * (8 * ev.layout.size + 12 * 193 * len(x))  # 16 points, whole batch (193 units)
    tuned = LandscapeEvaluator(model, x, y, mode="loop", tune=True,
                               memory_budget_mb=budget / 2 ** 20).set_plane(centre, directions)
    assert tuned.budget_points == 16 and tuned.batch_size == len(x)
    got = tuned.evaluate(grid)
    calls = tuned.choice["us_per_point_by_points_per_call"]
    assert set(calls) == {"16", "32", "64"}  # 81 points: 2x and 4x the budget's 16 are timed
    ref = ev.evaluate(grid)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-7)
    tuned.points_per_call = 64
    sizes = []
    run = tuned._call
    monkeypatch.setattr(tuned, "_call", lambda which, chunk, single: sizes.append(
        (which, len(chunk))) or run(which, chunk, single))
    tuned.evaluate_weights(tuned.weights_at(grid[:40]))
    tuned.evaluate(grid)
    assert sizes == [("weights", 16)] * 2 + [("weights", 8)] + [("coords", 64), ("coords", 17)]


@pytest.mark.slow
@pytest.mark.parametrize("source, data, first", [
    ("parabola", None, {"vectorized", "loop"}),  # the shortcut does not apply (one input)
    # convolutions do not vectorise strictly: vectorised with fallback loops instead; the shortcut applies
    ("digits", None, {"vectorized + fallback + shortcut", "vectorized + fallback", "loop + shortcut", "loop"}),
    ("tests.factories:tiny_resnet_model", "tests.factories:tiny_resnet_data",
     {"vectorized + fallback", "vectorized + fallback + fold", "loop", "loop + fold"}),
])
def test_tuned_strategy_is_timed_recorded_and_changes_no_value(source, data, first):
    model, x, y, ev, centre, directions, coords = _setup(source, data)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)), -1).reshape(-1, 2)
    tuned = LandscapeEvaluator(model, x, y, tune=True).set_plane(centre, directions)
    got = tuned.evaluate(grid)
    choice = tuned.choice
    timings = choice["us_per_point"]
    # the first round's winner is tried again as a loop compiled by XLA, and in parallel parts
    winner = min(first, key=timings.get)
    base = "loop" + "".join(f" + {w}" for w in ("shortcut", "fold") if f" + {w}" in winner)
    threads = intra_op_threads()
    second = {f"{base} + xla"} | ({f"{base} + parallel {threads}", f"{base} + xla + parallel {threads}"}
                                  if threads > 1 else set())
    assert choice["tuned"] and set(timings) == first | second
    assert choice["points_per_call"] == tuned.points_per_call
    assert str(choice["points_per_call"]) in choice["us_per_point_by_points_per_call"]
    assert Strategy(choice["method"], choice["shortcut"], choice["fold"], choice["xla"],
                    choice["parallel"], choice["fallback"]).label == min(timings, key=timings.get)
    assert {s.label for s in tuned.timed_strategies} == set(timings)
    ref = ev.evaluate(grid)  # the untuned default strategy
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-7)
    small = LandscapeEvaluator(model, x, y, tune=True).set_plane(centre, directions)
    small.evaluate(grid[:10])  # a first job too small to time is evaluated as it comes
    assert small.choice["tuned"] is False


@pytest.mark.parametrize("source, data, rtol", [
    ("tests.factories:float64_model", "tests.factories:float64_data", 1e-12),
    ("tests.factories:mixed_bfloat16_model", "tests.factories:policy_data", 1e-6),
])
def test_the_tuner_keeps_to_strategies_that_keep_the_models_precision(source, data, rtol):
    # XLA rounds a float64 model to float32's precision and single-threaded kernels round
    # bfloat16 differently (1e-2): a float64 model may run in parallel blocks, mixed precision
    # neither, and neither uses XLA
    model, x, y, ev, centre, directions, coords = _setup(source, data)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)), -1).reshape(-1, 2)
    tuned = LandscapeEvaluator(model, x, y, tune=True).set_plane(centre, directions)
    got = tuned.evaluate(grid)
    threads = intra_op_threads()
    parallel = {f"loop + parallel {threads}"} if "float64" in source and threads > 1 else set()
    assert set(tuned.choice["us_per_point"]) == {"vectorized", "loop"} | parallel
    ref = ev.evaluate(grid)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=rtol, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("source, data, strategy", [
    ("parabola", None, dict(method="loop", xla=True)),
    ("parabola", None, dict(method="loop", parallel=2)),
    ("parabola", None, dict(method="loop", xla=True, parallel=3)),
    ("parabola", None, dict(method="vectorized", parallel=2)),
    ("digits", None, dict(method="loop", shortcut=True, xla=True, parallel=2)),
    ("tests.factories:tiny_resnet_model", "tests.factories:tiny_resnet_data",
     dict(method="loop", fold=False)),
    ("tests.factories:tiny_resnet_model", "tests.factories:tiny_resnet_data", dict(method="loop", fold=True)),
    ("tests.factories:tiny_resnet_model", "tests.factories:tiny_resnet_data",
     dict(method="loop", fold=True, xla=True, parallel=2)),
])
def test_every_strategy_equals_per_point_keras_evaluation(source, data, strategy):
    model, x, y, ev, centre, directions, coords = _setup(source, data, train_epochs=2)
    ev.force_strategy(replace(ev.strategy, **strategy))
    _assert_matches_per_point(model, x, y, ev, centre, directions, coords[:5])  # 5: uneven parts
    assert {k: ev.choice[k] for k in strategy} == strategy


def test_batch_norms_fold_only_where_they_may():
    from tests.factories import bn_dropout_model, tiny_resnet_model

    pairs = {(layer.name, norm.name) for layer, norm in foldable_pairs(tiny_resnet_model())}
    # not 'shared' (its output is read twice) nor 'tanh' (the activation comes before the norm)
    assert pairs == {("stem", "bn_stem"), ("conv_a", "bn_a"), ("conv_b", "bn_b"),
                     ("proj", "bn_proj"), ("dense", "bn_dense")}
    assert foldable_pairs(bn_dropout_model()) == []  # Dense with ReLU, then the norm


def test_batch_norms_are_folded_by_default_where_the_activations_outweigh_the_kernels():
    import keras
    from tests.factories import tiny_resnet_data, tiny_resnet_model

    x, y = tiny_resnet_data()
    # the folded kernels hold 684 values; the normalisations pass over 552 per example
    assert LandscapeEvaluator(tiny_resnet_model(), x[:2], y[:2]).strategy.fold
    assert not LandscapeEvaluator(tiny_resnet_model(), x[:1], y[:1]).strategy.fold
    # a wide Dense-BN on a few examples: 16 x 512 activations against a 512 x 512 kernel
    inputs = keras.Input((512,))
    h = keras.layers.BatchNormalization()(keras.layers.Dense(512)(inputs))
    wide = keras.Model(inputs, keras.layers.Dense(1)(h))
    wide.compile(loss="mse")
    x, y = np.zeros((16, 512), np.float32), np.zeros((16, 1), np.float32)
    evaluator = LandscapeEvaluator(wide, x, y)
    assert evaluator.folding is not None and not evaluator.strategy.fold


@pytest.mark.slow
def test_a_sweep_stores_each_workers_strategy(tmp_path):
    from landscape_dist.config import config_from_dict
    from landscape_dist.commands import sweep
    from landscape_dist.store.surface import read_surface

    # two tiles: a worker evaluates its first at once and times the strategies on the next
    # (a sweep this small could not pay for the timings: unbounded here)
    config = config_from_dict({"grid": {"x": {"points": 16}, "y": {"points": 8}, "tile": [8, 8]},
                               "evaluation": {"tune_share": None}})
    summary = sweep(config, tmp_path, in_process=True, progress=False)
    stored = read_surface(tmp_path / "surface.h5")["random"].meta["evaluation_strategies"]
    assert stored == summary["slices"]["random"]["evaluation_strategies"]
    assert stored[0][""]["tuned"] is True and {"vectorized", "loop", "loop + xla"} <= set(stored[0][""]["us_per_point"])
    off = config_from_dict({"grid": {"x": {"points": 9}, "y": {"points": 9}, "tile": [9, 9]},
                            "evaluation": {"tune": False}})
    untuned = sweep(off, tmp_path / "off", in_process=True, progress=False)
    assert untuned["slices"]["random"]["evaluation_strategies"][0][""]["tuned"] is False


@pytest.mark.parametrize("source, data", [
    ("tests.factories:two_output_model", "tests.factories:two_output_data"),  # weighted terms, L2
    ("tests.factories:wide_sequential_model", "tests.factories:wide_sequential_data"),  # one loss, L2
])
def test_the_objective_is_the_loss_the_grid_shows(source, data):
    import tensorflow as tf

    model, x, y, ev, centre, directions, coords = _setup(source, data, train_epochs=1)
    weights = ev.weights_at(coords)
    objective = [float(ev.objective(tf.constant(w), ev.non_trainable_at())) for w in weights]
    np.testing.assert_allclose(objective, ev.evaluate_weights(weights)["loss"], rtol=1e-5)


def test_strategies_are_checked_labelled_and_forced_only_as_strategies():
    assert Strategy("loop", True, True, True, 2).label == "loop + shortcut + fold + xla + parallel 2"
    assert Strategy().label == "vectorized" and Strategy("loop", parallel=1).label == "loop"
    for bad in (dict(method="scan"), dict(parallel=0), dict(parallel=1.5), dict(parallel=True)):
        with pytest.raises(ValueError, match="The '(method|parallel)' parameter must be"):
            Strategy(**bad)
    model, x, y, ev, centre, directions, coords = _setup("parabola")
    with pytest.raises(TypeError, match="The 'strategy' parameter must be a Strategy"):
        ev.force_strategy(("loop", False, False, False, 1))


def test_the_tuners_rounds_keep_their_order_and_precision_rules():
    from landscape_dist.model.tuning import call_sizes, first_round, second_round

    labels = [s.label for s in first_round("auto", "vectorized", True, True)]
    assert labels == ["vectorized + shortcut", "vectorized", "vectorized + fold",
                      "loop + shortcut", "loop", "loop + fold"]
    assert [s.label for s in first_round("loop", "loop", False, False)] == ["loop"]
    best = Strategy("vectorized", fold=True)
    assert [s.label for s in second_round(best, ["float32"], 4)] == [
        "loop + fold + xla", "loop + fold + parallel 4", "loop + fold + xla + parallel 4"]
    assert [s.label for s in second_round(best, ["float64"], 4)] == ["loop + fold + parallel 4"]
    assert [s.label for s in second_round(best, ["float32"], 1)] == ["loop + fold + xla"]
    assert second_round(best, ["mixed_bfloat16"], 4) == []
    assert call_sizes(Strategy("vectorized"), 256, 10_000, 1e-6) == [64, 16]
    assert call_sizes(Strategy("loop"), 256, 600, 1e-6) == [64, 16, 512]  # 1024 > the job's points
    assert call_sizes(Strategy("loop"), 256, 10_000, 1e-3) == [64, 16]  # a larger call is slow


def test_the_compiled_loop_traces_the_model_once_for_every_data_batch_and_one_point_calls():
    # 30 examples in batches of 8 (8, 8, 8, 6): the model's layers run in Python once per trace
    import keras

    traces = []

    @keras.saving.register_keras_serializable(package="tests")
    class Counted(keras.layers.Dense):
        def call(self, inputs):
            traces.append(1)
            return super().call(inputs)

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(6, activation="tanh"),
                              Counted(1)])
    model.compile(loss="mse", metrics=["mae"])
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(30, 3)).astype(np.float32), rng.normal(size=(30, 1)).astype(np.float32)
    evaluator = LandscapeEvaluator(model, x, y, batch_size=8, mode="loop")
    centre = evaluator.layout.flatten([v.numpy() for v in model.trainable_variables])
    directions = random_directions(centre, evaluator.layout, 2, np.random.default_rng(3))
    evaluator.set_plane(centre, directions)
    coords = np.random.default_rng(4).uniform(-1, 1, size=(5, 2)).astype(np.float32)
    traces.clear()
    evaluator.evaluate(coords)
    assert len(traces) == 1
    got = _assert_matches_per_point(model, x, y, evaluator, centre, directions, coords)
    assert set(got) == {"loss", "mae"}
    # calls of one point each (a big model's memory budget) compile that point's values alone
    evaluator.points_per_call = 1
    traces.clear()
    single = evaluator.evaluate(coords)
    assert len(traces) == 1 and [key[2] for key in evaluator._compiled] == [False, True]
    for name in got:
        np.testing.assert_allclose(single[name], got[name], rtol=1e-6)
