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
