"""Built-in examples: models and data that need no download."""

from __future__ import annotations

import numpy as np


def parabola_data(n: int = 256, seed: int = 0):
    """x ~ N(0, 1), y = x^2 + N(0, 0.25^2); arrays of shape (n, 1) float32."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1))
    y = x ** 2 + rng.normal(0.0, 0.25, size=(n, 1))
    return x.astype(np.float32), y.astype(np.float32)


def parabola_model(seed: int = 0):
    """MLP 1-64-64-64-1 with ReLU, compiled with Adam and mean squared error (8,513 weights)."""
    import keras

    layers = [keras.Input((1,))]
    for i, units in enumerate((64, 64, 64)):
        layers.append(keras.layers.Dense(
            units, activation="relu", name=f"dense_{i}",
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i)))
    layers.append(keras.layers.Dense(1, name="output",
                                     kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 3)))
    model = keras.Sequential(layers, name="parabola_mlp")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def digits_data():
    """scikit-learn's bundled 8x8 digits: x (1797, 8, 8, 1) float32 in [0, 1], y (1797,) int32."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return x, digits.target.astype(np.int32)


def digits_model(seed: int = 0):
    """Small CNN for 8x8 digits: conv 8 -> conv 16 -> dense 10, cross-entropy and accuracy."""
    import keras

    init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)  # noqa: E731
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv_0", kernel_initializer=init(0)),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv_1", kernel_initializer=init(1)),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(10, name="logits", kernel_initializer=init(2)),
    ], name="digits_cnn")
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def digits_train():
    """The first 1,200 of the digits: a training split."""
    x, y = digits_data()
    return x[:1200], y[:1200]


def digits_test():
    """The other 597 digits: a test split."""
    x, y = digits_data()
    return x[1200:], y[1200:]


MODELS = {"parabola": parabola_model, "digits": digits_model}
DATASETS = {"parabola": parabola_data, "digits": digits_data, "digits_train": digits_train,
            "digits_test": digits_test}
