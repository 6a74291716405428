"""Models and data reachable as 'module:function' sources in tests."""

import numpy as np


def bn_dropout_model():
    import keras

    inputs = keras.Input((3,))
    h = keras.layers.Dense(16, activation="relu",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=1))(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5, seed=3)(h)
    outputs = keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(seed=2))(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


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
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


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
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def depthwise_transpose_data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 6, 6, 2)).astype(np.float32)
    y = (x.mean(axis=(1, 2)).argmax(axis=1) + 2 * (x[:, 0, 0, 0] > 0)).astype(np.int32)
    return x, y
