"""Filter normalisation by layer: every row of the table, nesting, the warning, the stored rules,
and per-point equality on a functional model with depthwise and transposed convolutions."""

import warnings

import keras
import numpy as np
import pytest

from landscape_dist.config import config_from_dict
from landscape_dist.core.directions import default_filter_rules, normalize_direction
from landscape_dist.core.layout import WeightLayout
from landscape_dist.model.filters import FilterRuleWarning, filter_rules
from landscape_dist.model.reference import evaluate_per_point, points_to_weights
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface


def _hand_filter_norms(tensor, axes):
    """Norms of the filters along ``axes``, one explicit slice at a time."""
    tensor = np.asarray(tensor, np.float64)
    norms = {}
    for index in np.ndindex(*[tensor.shape[a] for a in axes]):
        selector = [slice(None)] * tensor.ndim
        for axis, i in zip(axes, index):
            selector[axis] = i
        norms[index] = float(np.sqrt(np.sum(tensor[tuple(selector)] ** 2)))
    return norms


def _check(model, expected: dict, seed=0):
    """``expected``: variable path suffix -> the axes its filters run along, as the table says.
    Every kernel named there must come out with the centre's per-filter norms."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FilterRuleWarning)  # every layer here is in the table
        rules = filter_rules(model)
    variables = model.trainable_variables
    layout = WeightLayout.from_variables(variables)
    centre = layout.flatten([v.numpy() for v in variables])
    raw = np.random.default_rng(seed).standard_normal(layout.size).astype(np.float32)
    direction = layout.unflatten(normalize_direction(raw, centre, layout, "filter", "none", rules))
    checked = set()
    for var, rule, d in zip(variables, rules, direction):
        suffix = next((s for s in expected if var.path.endswith(s)), None)
        if suffix is None:
            continue
        assert rule.axes == expected[suffix], (var.path, rule)
        want, got = _hand_filter_norms(var.numpy(), rule.axes), _hand_filter_norms(d, rule.axes)
        assert want.keys() == got.keys()
        np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], rtol=1e-5)
        checked.add(suffix)
    assert checked == set(expected), set(expected) - checked
    return rules


def _build(inputs, outputs):
    model = keras.Model(inputs, outputs)
    model.compile(loss="mse")
    return model


def test_dense_and_convolutions_take_the_last_axis():
    keras.utils.set_random_seed(1)
    x = keras.Input((6, 6, 4))
    h = keras.layers.Conv2D(6, 3, groups=2, name="grouped")(x)
    h = keras.layers.Conv2D(5, 2, name="conv2d")(h)
    h = keras.layers.Flatten()(h)
    y = keras.layers.Dense(3, name="dense")(h)
    c1 = keras.layers.Conv1D(4, 2, name="conv1d")(keras.layers.Reshape((36, 4))(x))
    c3 = keras.layers.Conv3D(2, 2, name="conv3d")(keras.layers.Reshape((6, 6, 4, 1))(x))
    model = _build(x, [y, c1, c3])
    rules = _check(model, {"grouped/kernel": (3,), "conv2d/kernel": (3,), "dense/kernel": (1,),
                           "conv1d/kernel": (2,), "conv3d/kernel": (4,)})
    assert rules[0].rule == "Conv2D kernel: each index of the last axis"


def test_transposed_convolutions_take_axis_minus_two():
    keras.utils.set_random_seed(2)
    x = keras.Input((5, 5, 2))
    a = keras.layers.Conv2DTranspose(3, 2, name="t2d")(x)
    b = keras.layers.Conv1DTranspose(4, 3, name="t1d")(keras.layers.Reshape((25, 2))(x))
    c = keras.layers.Conv3DTranspose(2, 2, name="t3d")(keras.layers.Reshape((5, 5, 2, 1))(x))
    _check(_build(x, [a, b, c]), {"t2d/kernel": (2,), "t1d/kernel": (1,), "t3d/kernel": (3,)})


def test_depthwise_and_separable_convolutions_take_each_channel_and_multiplier():
    keras.utils.set_random_seed(3)
    x = keras.Input((6, 6, 3))
    a = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw2d")(x)
    b = keras.layers.SeparableConv2D(4, 3, depth_multiplier=2, name="sep2d")(x)
    flat = keras.layers.Reshape((36, 3))(x)
    c = keras.layers.DepthwiseConv1D(3, depth_multiplier=1, name="dw1d")(flat)
    d = keras.layers.SeparableConv1D(5, 3, name="sep1d")(flat)
    _check(_build(x, [a, b, c, d]), {
        "dw2d/kernel": (2, 3), "sep2d/depthwise_kernel": (2, 3), "sep2d/pointwise_kernel": (3,),
        "dw1d/kernel": (1, 2), "sep1d/depthwise_kernel": (1, 2), "sep1d/pointwise_kernel": (2,)})


def test_embedding_takes_each_row():
    keras.utils.set_random_seed(4)
    x = keras.Input((5,), dtype="int32")
    h = keras.layers.Embedding(20, 4, name="embed")(x)
    y = keras.layers.Dense(2, name="dense")(keras.layers.GlobalAveragePooling1D()(h))
    _check(_build(x, y), {"embed/embeddings": (0,), "dense/kernel": (1,)})


def test_einsum_dense_and_attention_take_the_output_axes_of_the_equation():
    keras.utils.set_random_seed(5)
    x = keras.Input((4, 5))
    a = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), name="einsum")(x)
    b = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, name="mha")(x, x)
    _check(_build(x, [a, b]), {"einsum/kernel": (1, 2), "query/kernel": (1, 2),
                               "key/kernel": (1, 2), "value/kernel": (1, 2),
                               "attention_output/kernel": (2,)})


def test_recurrent_kernels_take_the_last_axis():
    keras.utils.set_random_seed(6)
    x = keras.Input((4, 2))
    outs = [keras.layers.LSTM(3, name="lstm")(x), keras.layers.GRU(3, name="gru")(x),
            keras.layers.SimpleRNN(3, name="rnn")(x)]
    rules = _check(_build(x, outs), {
        "lstm_cell/kernel": (1,), "lstm_cell/recurrent_kernel": (1,),
        "gru_cell/kernel": (1,), "gru_cell/recurrent_kernel": (1,),
        "simple_rnn_cell/kernel": (1,), "simple_rnn_cell/recurrent_kernel": (1,)})
    assert rules[1].rule == "LSTMCell recurrent kernel: each index of the last axis"


class _Block(keras.layers.Layer):
    """A custom layer holding a depthwise convolution and a Dense sublayer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="inner_dw")
        self.head = keras.layers.Dense(4, name="inner_dense")

    def call(self, x):
        return self.head(keras.layers.Flatten()(self.depthwise(x)))


def test_nested_models_and_layers_resolve_to_the_innermost_owner():
    keras.utils.set_random_seed(7)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="seq_dense")], name="inner")
    x = keras.Input((5, 5, 2))
    h = _Block(name="block")(x)
    y = inner(h)
    _check(_build(x, y), {"inner_dw/kernel": (2, 3), "inner_dense/kernel": (1,),
                          "seq_dense/kernel": (1,)})


class _Custom(keras.layers.Layer):
    def build(self, shape):
        self.mixing = self.add_weight(shape=(shape[-1], 3), name="mixing")
        self.offset = self.add_weight(shape=(3,), name="offset")

    def call(self, x):
        return x @ self.mixing + self.offset


def test_unknown_layer_kernels_take_the_last_axis_with_one_warning():
    x = keras.Input((4,))
    model = _build(x, keras.layers.Dense(2, name="d")(_Custom(name="custom")(x)))
    with pytest.warns(FilterRuleWarning) as record:
        rules = filter_rules(model)
    assert len(record) == 1
    assert str(record[0].message) == ("Filter normalisation does not know the layers of "
                                      "custom/mixing; their filters are taken along the last axis.")
    assert [r.axes for r in rules] == [(1,), (), (1,), ()]
    assert rules[0].rule == "_Custom mixing: each index of the last axis (layer type not known)"


def test_depthwise_filters_were_one_per_kernel_under_the_last_axis_rule():
    """The fix in numbers: per-(channel, multiplier) norms match the centre's only by layer."""
    keras.utils.set_random_seed(8)
    x = keras.Input((6, 6, 5))
    model = _build(x, keras.layers.DepthwiseConv2D(3, name="dw")(x))
    variables = model.trainable_variables
    layout = WeightLayout.from_variables(variables)
    centre = layout.flatten([v.numpy() for v in variables])
    raw = np.random.default_rng(0).standard_normal(layout.size).astype(np.float32)
    kernel = variables[0].numpy()
    want = np.array(list(_hand_filter_norms(kernel, (2, 3)).values()))
    deviation = {}
    for label, rules in (("last axis", default_filter_rules(layout)), ("by layer", filter_rules(model))):
        d = layout.unflatten(normalize_direction(raw, centre, layout, "filter", "biasbn", rules))[0]
        got = np.array(list(_hand_filter_norms(d, (2, 3)).values()))
        deviation[label] = float(np.max(np.abs(got / want - 1)))
    assert deviation["by layer"] < 1e-6
    assert deviation["last axis"] > 0.1  # 5 kernels scaled as one filter


@pytest.fixture(scope="module")
def depthwise_transpose_sweep(tmp_path_factory):
    """A filter-normalised random slice of the model with depthwise and transposed convolutions:
    (its config, the slice read back)."""
    out = tmp_path_factory.mktemp("dwt")
    config = config_from_dict({
        "model": {"source": "tests.factories:depthwise_transpose_model"},
        "data": {"source": "tests.factories:depthwise_transpose_data"},
        "grid": {"x": {"points": 3}, "y": {"points": 3}, "tile": [3, 3]},
        "slices": [{"name": "random", "directions": {"seed": 3}}]})
    sweep(config, out, in_process=True, progress=False)
    return config, read_surface(out / "surface.h5")["random"]


def _axes_of(rule: str, ndim: int):
    """The filter axes a stored rule's words name (None: the tensor is zeroed)."""
    if rule == "zeroed (ignore: biasbn)":
        return None
    for words, axes in ((": each (channel, multiplier)", (ndim - 2, ndim - 1)),
                        (": each index of axis -2", (ndim - 2,)),
                        (": each index of the last axis", (ndim - 1,)), (": whole tensor", ())):
        if words in rule:
            return axes
    raise AssertionError(f"a stored rule this test does not know: {rule!r}")


def test_the_stored_directions_follow_the_stored_rules(depthwise_transpose_sweep):
    """Per tensor and per filter, each stored direction has the centre's norm along the axes the
    file says its filters were taken by."""
    _, surface = depthwise_transpose_sweep
    layout = surface.layout
    rules = surface.meta["filter_rules"]
    assert len(rules) == len(layout.names) and surface.directions.shape == (2, layout.size)
    centre = layout.unflatten(np.asarray(surface.centre, np.float64))
    checked = set()
    for direction in surface.directions:
        for name, rule, w, d in zip(layout.names, rules, centre, layout.unflatten(direction)):
            axes = _axes_of(rule, w.ndim)
            if axes is None:
                assert not np.any(d), name
                continue
            want, got = _hand_filter_norms(w, axes), _hand_filter_norms(d, axes)
            assert len(want) > 1 or not axes, (name, rule)
            np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want],
                                       rtol=1e-5, err_msg=f"{name}: {rule}")
            checked.add(rule.split(":")[0])
    assert checked == {"DepthwiseConv2D kernel", "Conv2DTranspose kernel", "Dense kernel"}


def test_the_surface_file_records_each_tensors_rule(depthwise_transpose_sweep):
    config, surface = depthwise_transpose_sweep
    rules = dict(zip(surface.layout.names, surface.meta["filter_rules"]))
    assert rules["dw/kernel"] == "DepthwiseConv2D kernel: each (channel, multiplier)"
    assert rules["up/kernel"] == "Conv2DTranspose kernel: each index of axis -2"
    assert rules["bn/gamma"] == "zeroed (ignore: biasbn)"
    # every point equals Keras's own evaluate at the same weights
    model = ModelSpec.from_source(config.model.source).build()
    x, y = DataSpec(config.data.source).load()
    xs, ys = surface.xcoordinates, surface.ycoordinates
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    coords = np.stack([xx.ravel(), yy.ravel()], axis=1)
    ref = evaluate_per_point(model, x, y, surface.layout,
                             points_to_weights(surface.centre, surface.directions, coords),
                             non_trainable=surface.non_trainable)
    assert set(ref) == set(surface.values) == {"loss", "accuracy"}
    for name in ref:
        np.testing.assert_allclose(surface.values[name].ravel(), ref[name], rtol=2e-5, atol=1e-6)
