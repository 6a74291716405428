"""Models with several outputs and losses, and models in mixed or double precision: every point
equals Keras's own ``evaluate`` at the same weights."""

import numpy as np
import pytest

from landscape_dist.config import config_from_dict
from landscape_dist.core.layout import WeightLayout
from landscape_dist.core.quantities import POINTS
from landscape_dist.execution import InProcessPool, Job
from landscape_dist.model.evaluator import LandscapeEvaluator
from landscape_dist.model.reference import evaluate_per_point, points_to_weights
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface
from landscape_dist.config.words import SETTING_WORDS

F = "tests.factories:"


def _config(model, data, **extra):
    return config_from_dict({"model": {"source": model}, "data": {"source": data},
                             "grid": {"x": {"points": 3}, "y": {"points": 3}, "tile": [2, 2]},
                             "slices": [{"name": "random", "directions": {"seed": 5}}], **extra})


def _reference(surface, model_source, data_source):
    model = ModelSpec.from_source(model_source).build()
    x, y = DataSpec(data_source).load()
    yy, xx = np.meshgrid(surface.ycoordinates, surface.xcoordinates, indexing="ij")
    coords = np.stack([xx.ravel(), yy.ravel()], axis=1)
    return evaluate_per_point(model, x, y, surface.layout,
                              points_to_weights(surface.centre, surface.directions, coords))


def test_two_outputs_give_the_weighted_loss_each_outputs_loss_and_metrics(tmp_path):
    config = _config(F + "two_output_model", F + "two_output_data")
    sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["random"]
    assert set(surface.values) == {"loss", "value_loss", "label_loss", "value_mae",
                                   "label_accuracy"}
    ref = _reference(surface, F + "two_output_model", F + "two_output_data")
    assert set(ref) == set(surface.values)  # the names Keras's evaluate reports
    for name in ref:
        np.testing.assert_allclose(surface.values[name].ravel(), ref[name], rtol=1e-5, atol=1e-7)
    # the total is the weighted sum of the outputs' losses plus the regularisation
    reg = surface.values["loss"] - 0.5 * surface.values["value_loss"] - 2.0 * surface.values["label_loss"]
    assert np.all(reg > 0) and np.ptp(reg) > 0


@pytest.mark.slow
def test_two_outputs_combine_exactly_over_shards_and_read_from_npz(tmp_path):
    from tests.factories import two_output_data

    x, y = two_output_data()
    np.savez(tmp_path / "d.npz", x=x, y_value=y["value"], y_label=y["label"])
    loaded_x, loaded_y = DataSpec(str(tmp_path / "d.npz")).load()
    assert set(loaded_y) == {"value", "label"}
    spec = ModelSpec.from_source(F + "two_output_model")
    evaluation = config_from_dict({}).evaluation
    whole = InProcessPool(spec, DataSpec(str(tmp_path / "d.npz")), evaluation)
    shards = InProcessPool(spec, DataSpec(str(tmp_path / "d.npz"), num_shards=3), evaluation)
    size = whole.workers[0].evaluator.layout.size
    rng = np.random.default_rng(0)
    centre, directions = rng.normal(size=size) * 0.3, rng.normal(size=(2, size)) * 0.3
    coords = rng.uniform(-1, 1, size=(5, 2))
    results = []
    for pool in (whole, shards):
        pool.set_plane(centre, directions, [])
        got = {}
        pool.run([Job(0, POINTS, coords)], got.__setitem__)
        results.append(got[0])
    for name in results[0]:
        np.testing.assert_allclose(results[1][name], results[0][name], rtol=1e-5)


def test_labels_that_do_not_match_the_outputs_are_refused():
    from tests.factories import two_output_data

    model = ModelSpec.from_source(F + "two_output_model").build()
    x, y = two_output_data()
    with pytest.raises(ValueError) as err:
        LandscapeEvaluator(model, x, {"value": y["value"], "class": y["label"]})
    assert str(err.value.reworded(SETTING_WORDS)) == (
        "The 'data.source' setting gives labels for ['class', 'value'], but the model's outputs are "
        "['label', 'value']. Give one label array per output, keyed by output name.")
    with pytest.raises(ValueError) as err:
        LandscapeEvaluator(model, x, {"value": y["value"], "label": y["label"] + 5})
    assert str(err.value.reworded(SETTING_WORDS)) == (
        "The 'data.source' setting gives labels for output 'label' from 5 to 7, but the model has "
        "3 outputs for the loss 'sparse_categorical_crossentropy'. Give labels in 0..2, or a model "
        "with more outputs.")


def test_labels_are_checked_against_the_graphs_output_shapes_without_running_the_model():
    import keras

    from landscape_dist.model.checks import check_data

    calls = []

    class Counted(keras.layers.Dense):
        def call(self, inputs):
            calls.append(1)
            return super().call(inputs)

    class Subclassed(keras.Model):  # no graph: its output shape comes from a pass
        def __init__(self):
            super().__init__()
            self.dense = Counted(3)

        def call(self, inputs):
            return self.dense(inputs)

    x, y = np.zeros((8, 4), np.float32), np.arange(8) % 4
    functional = keras.Sequential([keras.Input((4,)), Counted(3)])
    for model, passes in ((functional, 0), (Subclassed(), 1)):
        model.compile(loss="sparse_categorical_crossentropy")
        model(x[:1])
        calls.clear()
        with pytest.raises(ValueError) as err:
            check_data(model, x, y)
        assert len(calls) == passes
        assert str(err.value.reworded(SETTING_WORDS)) == (
            "The 'data.source' setting gives labels from 0 to 3, but the model has 3 outputs for "
            "the loss 'sparse_categorical_crossentropy'. Give labels in 0..2, or a model with "
            "more outputs.")


# tolerance of each policy's compute dtype against Keras's evaluate at the same weights:
# float16 has an 11-bit significand (eps 9.8e-4), bfloat16 an 8-bit one (eps 7.8e-3); for float64
# Keras's evaluate reports its means as float32 (eps 1.2e-7), the float64 check is below
@pytest.mark.parametrize("model, data, policy, rtol", [
    ("mixed_float16_model", "policy_data", "mixed_float16", 5e-3),
    ("mixed_bfloat16_model", "policy_data", "mixed_bfloat16", 3e-2),
    ("float64_model", "float64_data", "float64", 1e-6),
])
def test_dtype_policies_match_keras_within_their_precision(tmp_path, model, data, policy, rtol):
    config = _config(F + model, F + data)
    summary = sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["random"]
    assert surface.meta["dtype_policies"] == [policy]
    assert summary["slices"]["random"]["dtype_policies"] == [policy]
    ref = _reference(surface, F + model, F + data)
    for name in ref:
        np.testing.assert_allclose(surface.values[name].ravel(), ref[name], rtol=rtol, atol=1e-7)


def test_float64_models_are_evaluated_in_float64():
    model = ModelSpec.from_source(F + "float64_model").build()
    x, y = DataSpec(F + "float64_data").load()
    ev = LandscapeEvaluator(model, x, y)
    assert ev.dtype.name == "float64"
    layout = WeightLayout.from_variables(model.trainable_variables)
    centre = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    directions = np.random.default_rng(2).normal(size=(2, layout.size))
    ev.set_plane(centre, directions)
    coords = np.array([[0.0, 0.0], [1e-9, 0.0], [0.3, -0.7]])
    got = ev.evaluate(coords)
    # independent float64 reference: the forward pass at the weights, the mean squared error in NumPy
    for point, c in enumerate(coords):
        weights = centre + c @ directions
        for var, value in zip(model.trainable_variables, layout.unflatten(weights)):
            var.assign(value)
        pred = np.asarray(model(x, training=False), np.float64)
        np.testing.assert_allclose(got["loss"][point], np.mean((pred - y) ** 2), rtol=1e-12)
        # metrics keep Keras's metric objects, whose state is float32
        np.testing.assert_allclose(got["mae"][point], np.mean(np.abs(pred - y)), rtol=1e-6)
    assert got["loss"][1] != got["loss"][0]  # a step that float32 weights could not resolve
