"""Models and data reachable as 'module:function' sources in tests."""

import numpy as np


def _classifier(model):
    """``model`` compiled as the classifiers here are: Adam, cross-entropy on logits, accuracy."""
    import keras

    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def bn_dropout_model():
    import keras

    inputs = keras.Input((3,))
    h = keras.layers.Dense(16, activation="relu",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=1))(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5, seed=3)(h)
    outputs = keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(seed=2))(h)
    model = keras.Model(inputs, outputs)
    return _classifier(model)


def bn_dropout_data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(96, 3)).astype(np.float32)
    y = (np.abs(x).argmax(axis=1) + (x.sum(axis=1) > 0)).astype(np.int32)
    return x, y


def sharded_data(shard=None, num_shards=None):
    """30 examples x = 0..29; asked for a shard, it builds only that shard's rows."""
    start, stop = (0, 30) if shard is None else (shard * 30 // num_shards, (shard + 1) * 30 // num_shards)
    x = np.arange(start, stop, dtype=np.float32)[:, None]
    return x, 2.0 * x


def wide_sequential_model():
    """Sequential: Dense(16) on 8 inputs (the first-layer shortcut applies), batch-norm, dropout."""
    import keras

    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(16, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(seed=4)),
        keras.layers.BatchNormalization(),
        keras.layers.Dropout(0.5, seed=5),
        keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(seed=6),
                           kernel_regularizer=keras.regularizers.L2(1e-2)),
    ])
    return _classifier(model)


def wide_sequential_data():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(120, 8)).astype(np.float32)
    y = (x[:, :3].argmax(axis=1)).astype(np.int32)
    return x, y


def depthwise_transpose_model():
    """Functional: depthwise conv, batch-norm, transposed conv, pooling, Dense; two metrics."""
    import keras

    init = keras.initializers.GlorotUniform
    x = keras.Input((6, 6, 2))
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw", depthwise_initializer=init(1))(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2DTranspose(3, 2, name="up", kernel_initializer=init(2))(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    y = keras.layers.Dense(4, name="head", kernel_initializer=init(3))(h)
    model = keras.Model(x, y, name="dwt")
    return _classifier(model)


def depthwise_transpose_data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 6, 6, 2)).astype(np.float32)
    y = (x.mean(axis=(1, 2)).argmax(axis=1) + 2 * (x[:, 0, 0, 0] > 0)).astype(np.int32)
    return x, y


def two_output_model():
    """Functional, two outputs: a regression head (mse, weight 0.5, mae) and a 3-class head
    (sparse cross-entropy, weight 2, accuracy); an L2 regulariser on the shared layer."""
    import keras

    init = keras.initializers.GlorotUniform
    x = keras.Input((4,))
    h = keras.layers.Dense(8, activation="tanh", kernel_initializer=init(1),
                           kernel_regularizer=keras.regularizers.L2(1e-2), name="shared")(x)
    value = keras.layers.Dense(1, kernel_initializer=init(2), name="value")(h)
    label = keras.layers.Dense(3, kernel_initializer=init(3), name="label")(h)
    model = keras.Model(x, {"value": value, "label": label}, name="two_heads")
    model.compile(optimizer="adam",
                  loss={"value": "mse",
                        "label": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                  loss_weights={"value": 0.5, "label": 2.0},
                  metrics={"value": ["mae"], "label": ["accuracy"]})
    return model


def two_output_data():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    return x, {"value": (x[:, :1] ** 2).astype(np.float32),
               "label": (x[:, 1:].argmax(axis=1)).astype(np.int32)}


def _policy_model(policy, input_dtype="float32"):
    import keras

    init = keras.initializers.GlorotUniform
    x = keras.Input((3,), dtype=input_dtype)
    h = keras.layers.Dense(16, activation="relu", kernel_initializer=init(1), dtype=policy)(x)
    h = keras.layers.Dense(16, activation="tanh", kernel_initializer=init(2), dtype=policy)(h)
    y = keras.layers.Dense(1, kernel_initializer=init(3), dtype=policy)(h)
    model = keras.Model(x, y)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


def mixed_float16_model():
    return _policy_model("mixed_float16")


def mixed_bfloat16_model():
    return _policy_model("mixed_bfloat16")


def float64_model():
    return _policy_model("float64", "float64")


def policy_data():
    rng = np.random.default_rng(17)
    x = rng.normal(size=(64, 3))
    return x.astype(np.float32), (x[:, :1] * x[:, 1:2]).astype(np.float32)


def float64_data():
    x, y = policy_data()
    return x.astype(np.float64), y.astype(np.float64)


def failing_data():
    """A data source that fails: its table is missing."""
    raise FileNotFoundError("no such table: examples")


def failing_model():
    """A model source that fails while it builds."""
    raise ValueError("units must be positive")



def least_squares_model():
    """Linear least squares: Dense(1) on 4 inputs with mean squared error. Its Hessian is
    2/N [X 1]^T [X 1], the same at every weight vector."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, name="linear")])
    model.compile(optimizer="sgd", loss="mse")
    return model


def least_squares_data():
    """64 examples whose 4 input columns are orthogonal, zero-mean and of distinct norms: the
    Hessian of least squares is then diagonal, with eigenvalues 2 |x_j|^2 / N and 2 (the bias)."""
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.standard_normal((64, 5)))
    q = q - q.mean(axis=0)  # zero-mean columns, orthogonal to the bias's column of ones ...
    q, _ = np.linalg.qr(np.column_stack([np.ones(64), q]))  # ... re-orthogonalised
    x = q[:, 1:5] * np.array([12.0, 9.0, 5.0, 2.5])
    y = x @ np.array([0.5, -1.0, 0.25, 2.0]) + rng.normal(0.0, 0.1, 64)
    return x.astype(np.float32), y[:, None].astype(np.float32)


def small_tanh_model():
    """3-12-12-1 tanh MLP, 217 weights, mean squared error plus an L2 penalty on one kernel."""
    import keras

    init = lambda i: keras.initializers.GlorotUniform(seed=20 + i)  # noqa: E731
    model = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(12, activation="tanh", name="hidden_0", kernel_initializer=init(0)),
        keras.layers.Dense(12, activation="tanh", name="hidden_1", kernel_initializer=init(1),
                           kernel_regularizer=keras.regularizers.L2(1e-3)),
        keras.layers.Dense(1, name="out", kernel_initializer=init(2)),
    ])
    model.compile(optimizer="adam", loss="mse")
    return model


def small_tanh_data(shard=None, num_shards=None):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((90, 3)).astype(np.float32)
    y = (np.sin(2 * x[:, :1]) + x[:, 1:2] * x[:, 2:3]).astype(np.float32)
    if shard is None:
        return x, y
    lo, hi = shard * 90 // num_shards, (shard + 1) * 90 // num_shards
    return x[lo:hi], y[lo:hi]


def tiny_resnet_model():
    """A small residual net with batch norms to fold: conv(4)-BN-ReLU; a block of conv-BN-ReLU,
    conv(with bias)-BN and a strided 1x1 projection-BN, added; a conv whose output is read by its
    BN and by the pooling (not foldable); Dense(8)-BN (folds) then a tanh Dense(8)-BN (does not:
    the activation comes first); Dense(3) with an L2 regulariser."""
    import keras
    from keras import layers

    init = lambda i: keras.initializers.HeNormal(seed=40 + i)  # noqa: E731
    x = keras.Input((8, 8, 2))
    h = layers.ReLU()(layers.BatchNormalization(name="bn_stem")(
        layers.Conv2D(4, 3, padding="same", use_bias=False, name="stem", kernel_initializer=init(0))(x)))
    a = layers.ReLU()(layers.BatchNormalization(name="bn_a")(
        layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, name="conv_a",
                      kernel_initializer=init(1))(h)))
    a = layers.BatchNormalization(name="bn_b")(
        layers.Conv2D(6, 3, padding="same", name="conv_b", kernel_initializer=init(2))(a))
    p = layers.BatchNormalization(name="bn_proj", center=False)(
        layers.Conv2D(6, 1, strides=2, use_bias=False, name="proj", kernel_initializer=init(3))(h))
    h = layers.ReLU()(layers.Add()([a, p]))
    shared = layers.Conv2D(6, 1, name="shared", kernel_initializer=init(4))(h)
    h = layers.Add()([layers.BatchNormalization(name="bn_shared")(shared), shared])
    h = layers.GlobalAveragePooling2D()(h)
    h = layers.BatchNormalization(name="bn_dense", scale=False)(
        layers.Dense(8, name="dense", kernel_initializer=init(5))(h))
    h = layers.BatchNormalization(name="bn_after_tanh")(
        layers.Dense(8, activation="tanh", name="tanh", kernel_initializer=init(6))(h))
    y = layers.Dense(3, name="head", kernel_initializer=init(7),
                     kernel_regularizer=keras.regularizers.L2(1e-3))(h)
    model = keras.Model(x, y, name="tiny_resnet")
    return _classifier(model)


def tiny_resnet_data():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(64, 8, 8, 2)).astype(np.float32)
    y = (x[:, :4, :4].mean(axis=(1, 2, 3)) > 0).astype(np.int32) + (x[..., 1].mean(axis=(1, 2)) > 0)
    return x, y.astype(np.int32)
