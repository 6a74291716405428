"""Speed on the models users bring, from the first tile: per-point Keras against the tuned evaluator.

    python scripts/bench_models.py [--quick] [--no-resnet50] [--only NAME ...] [--json FILE]

For each model (a small text transformer, a convolutional autoencoder with transposed
convolutions, the ResNet-style net of ``benchmark.py``, a ResNet50 from Keras Applications and the
parabola MLP) a sweep of a few tiles runs in process, the way a worker runs it: its strategy tuned
within 10% of the sweep's estimated time (``evaluation.tune_share``), its first tile evaluated at
once with the default. Printed, in one table, with the float32 matmul ceiling measured in the same
run: the per-point Keras method (``assign`` the weights, then ``test_on_batch`` on the whole
dataset) and ours, as time to the first tile (Keras's first call compiles too; ours builds the
evaluator, compiles and evaluates; with an empty tuning cache, then in a fresh process with what
that run stored) and as steady points per second (the tiles after the tuning). ``--quick`` runs smaller
sweeps and fewer per-point evaluations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from benchmark import machine, matmul_ceiling, resnet_data, resnet_model  # noqa: E402


# ---------------------------------------------------------------------------- the models

def _classifier(model):
    import keras

    model.compile(optimizer="adam", metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def transformer(quick: bool):
    """Embedding(2000, 64) over 32 tokens, one block of MultiHeadAttention (4 heads) and a
    Dense(128)-Dense(64) feed-forward, each with a LayerNormalization; mean pooling, Dense(4)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    tokens = keras.Input((32,), dtype="int32")
    h = layers.Embedding(2000, 64)(tokens)
    h = layers.LayerNormalization()(h + layers.MultiHeadAttention(4, 16)(h, h))
    f = layers.Dense(64)(layers.Dense(128, activation="relu")(h))
    h = layers.LayerNormalization()(h + f)
    model = _classifier(keras.Model(tokens, layers.Dense(4)(layers.GlobalAveragePooling1D()(h))))
    rng = np.random.default_rng(1)
    n = 128 if quick else 256
    x = rng.integers(0, 2000, size=(n, 32)).astype(np.int32)
    return model, x, (x[:, :4].sum(axis=1) % 4).astype(np.int32)


def conv_autoencoder(quick: bool):
    """28x28x1 images: Conv2D(16, stride 2)-Conv2D(32, stride 2) down, Conv2DTranspose(32, stride
    2)-Conv2DTranspose(16, stride 2)-Conv2D(1) back up; mean squared error."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    images = keras.Input((28, 28, 1))
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(images)
    h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(h)
    model = keras.Model(images, layers.Conv2D(1, 3, padding="same")(h))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(2)
    x = rng.random((64 if quick else 128, 28, 28, 1)).astype(np.float32)
    return model, x, x


def resnet_style(quick: bool):
    """``benchmark.resnet_model`` on 32x32x3 images (1,024; 256 with ``--quick``)."""
    x, y = resnet_data(256 if quick else 1024)
    return resnet_model(), x, y


def resnet50(quick: bool):
    """``keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)``, 32
    random images (23.6M weights)."""
    import keras

    keras.utils.set_random_seed(0)
    model = _classifier(keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3),
                                                    classes=10, classifier_activation=None))
    rng = np.random.default_rng(3)
    return model, rng.standard_normal((32, 64, 64, 3)).astype(np.float32), rng.integers(
        0, 10, 32).astype(np.int32)


def parabola(quick: bool):
    """The seed example's MLP 1-64-64-64-1 on 256 examples."""
    from landscape_dist.model.examples import parabola_data, parabola_model

    return (parabola_model(), *parabola_data())


# name -> (builder, (side of the sweep's grid, points per tile), the same for --quick,
#          per-point Keras evaluations (quick))
MODELS = {
    "transformer": (transformer, (48, 64), (8, 16), (16, 6)),
    "conv_autoencoder": (conv_autoencoder, (48, 64), (8, 16), (16, 6)),
    "resnet_style": (resnet_style, (16, 16), (4, 8), (8, 4)),
    "resnet50": (resnet50, (5, 8), (4, 8), (4, 2)),
    "parabola": (parabola, (101, 256), (32, 256), (64, 16)),
}


# ---------------------------------------------------------------------------- the measurements

def _plane(model):
    from landscape_dist.core.directions import random_directions
    from landscape_dist.core.layout import WeightLayout

    layout = WeightLayout.from_variables(model.trainable_variables)
    centre = layout.flatten([v.numpy() for v in model.trainable_variables])
    directions = random_directions(centre, layout, 2, np.random.default_rng(0))
    return layout, centre, directions


def _tiles(side: int, tile: int) -> list[np.ndarray]:
    xs = np.linspace(-1, 1, side)
    grid = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2).astype(np.float32)
    return [grid[i:i + tile] for i in range(0, len(grid), tile)]


def per_point_keras(model, x, y, layout, centre, directions, coords) -> dict:
    """The per-point method on ``coords``: seconds to its first ``len(coords[0])`` points
    (its first call compiles) and steady points per second after those."""
    from landscape_dist.model.reference import points_to_weights

    weights = points_to_weights(centre, directions, coords)
    times = []
    t0 = time.perf_counter()
    for row in weights:
        for var, value in zip(model.trainable_variables, layout.unflatten(row)):
            var.assign(value)
        model.test_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    for var, value in zip(model.trainable_variables, layout.unflatten(centre)):
        var.assign(value)
    steady = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None
    return {"first_point_s": times[0], "steady_points_per_s": steady,
            "seconds_per_point": None if steady is None else 1 / steady}


def ours(model, x, y, centre, directions, tiles, cache: str) -> dict:
    """A sweep of ``tiles`` as a worker runs it (tuned within the default share, the choice kept
    in ``cache``): seconds to the first tile (the evaluator built, compiled, evaluated), the
    tuning's own seconds, points per second over the tiles after the tuning, and the choice."""
    from landscape_dist.model.evaluator import LandscapeEvaluator

    t0 = time.perf_counter()
    ev = LandscapeEvaluator(model, x, y, tune=True, tune_after=1, tune_share=0.1,
                            tuning_cache=cache).set_plane(centre, directions)
    ev.expect_jobs(len(tiles))
    ev.evaluate(tiles[0])
    first = time.perf_counter() - t0
    seconds = []
    for tile in tiles[1:]:
        t1 = time.perf_counter()
        ev.evaluate(tile)
        seconds.append((time.perf_counter() - t1, len(tile)))
    choice = ev.choice
    steady = seconds[1:] if len(seconds) > 1 else seconds  # the second tile is the one tuned on
    rate = sum(n for _, n in steady) / sum(s for s, _ in steady) if steady else None
    return {"first_tile_s": first, "tile_points": len(tiles[0]), "steady_points_per_s": rate,
            "total_s": time.perf_counter() - t0, "choice": choice}


def _next_run(name: str, quick: bool, cache: str) -> dict:
    """:func:`ours` on the first two tiles in a fresh process (the next run: nothing compiled or
    traced yet), with the tuning cache the previous run filled."""
    import subprocess

    command = [sys.executable, os.path.abspath(__file__), "--next-run", name, cache]
    done = subprocess.run(command + (["--quick"] if quick else []), capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_next(name: str, quick: bool, cache: str) -> None:
    """The other end of :func:`_next_run`: the model built again (seeded: the same one), two
    tiles evaluated, the result printed as JSON."""
    build, full, small, _ = MODELS[name]
    side, tile = small if quick else full
    model, x, y = build(quick)
    model.evaluate(x[:2], y[:2], verbose=0)
    _, centre, directions = _plane(model)
    print(json.dumps(ours(model, x, y, centre, directions, _tiles(side, tile)[:2], cache),
                     default=str))


def bench(name: str, quick: bool, ceiling: float) -> dict:
    from landscape_dist.model.reference import flops_per_example

    build, full, small, per_point = MODELS[name]
    side, tile = small if quick else full
    model, x, y = build(quick)
    model.evaluate(x[:2], y[:2], verbose=0)
    layout, centre, directions = _plane(model)
    tiles = _tiles(side, tile)
    coords = np.concatenate(tiles)[:per_point[1] if quick else per_point[0]]
    keras_run = per_point_keras(model, x, y, layout, centre, directions, coords)
    keras_first_tile = keras_run["first_point_s"] + (len(tiles[0]) - 1) * keras_run["seconds_per_point"]
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as cache:
        cold = ours(model, x, y, centre, directions, tiles, cache)
        warm = _next_run(name, quick, cache)
    flop = flops_per_example(model) * len(x)
    rate = cold["steady_points_per_s"]
    return {"model": name, "weights": layout.size, "examples": len(x), "points": side * side,
            "tile_points": len(tiles[0]), "keras_points_per_s": keras_run["steady_points_per_s"],
            "keras_first_tile_s": keras_first_tile, "ours_points_per_s": rate,
            "ours_first_tile_cold_s": cold["first_tile_s"],
            "ours_first_tile_warm_s": warm["first_tile_s"], "sweep_s": cold["total_s"],
            "tuning_s": cold["choice"].get("tuning_s"),
            "tuning_budget_s": cold["choice"].get("tuning_budget_s"),
            "strategy": _label(cold["choice"]), "warm_chosen_by": warm["choice"].get("chosen_by"),
            "gflops": rate * flop / 1e9 if rate and flop else None,
            "ceiling_fraction": rate * flop / 1e9 / ceiling if rate and flop else None,
            "choice": cold["choice"]}


def _label(choice: dict) -> str:
    parts = [choice["method"]] + [w for w in ("fallback", "shortcut", "fold", "xla") if choice[w]]
    if choice["parallel"] > 1:
        parts.append(f"parallel {choice['parallel']}")
    by = choice.get("chosen_by", "default")
    return " + ".join(parts) + f" ({by})"


def _print(rows: list[dict], ceiling: float) -> None:
    print(f"\nmachine: {machine()}; float32 matmul ceiling {ceiling:.0f} GFLOP/s (same run)")
    head = ("| model | weights | grid points (tile) | per-point Keras: first tile s, points/s | "
            "ours: first tile s (cold / warm cache) | ours: points/s (x Keras) | tuning s (budget) "
            "| strategy | GFLOP/s (% ceiling, Dense/Conv only) |")
    print(head)
    print("|" + "---|" * 9)
    for r in rows:
        speedup = (r["ours_points_per_s"] / r["keras_points_per_s"]
                   if r["ours_points_per_s"] and r["keras_points_per_s"] else None)
        gflops = (f"{r['gflops']:.0f} ({100 * r['ceiling_fraction']:.0f}%)"
                  if r["gflops"] else "")
        budget = "" if r["tuning_budget_s"] is None else f" ({r['tuning_budget_s']:.2f})"
        tuning = "-" if r["tuning_s"] is None else f"{r['tuning_s']:.2f}{budget}"
        print(f"| {r['model']} | {r['weights']:,} | {r['points']} ({r['tile_points']}) | "
              f"{r['keras_first_tile_s']:.2f}, {_num(r['keras_points_per_s'])} | "
              f"{r['ours_first_tile_cold_s']:.2f} / {r['ours_first_tile_warm_s']:.2f} | "
              f"{_num(r['ours_points_per_s'])} ({_num(speedup, 1)}x) | {tuning} | "
              f"{r['strategy']}; warm: {r['warm_chosen_by'] or 'default'} | {gflops} |")


def _num(value, digits=None) -> str:
    if value is None:
        return "-"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sweeps, fewer per-point runs")
    parser.add_argument("--no-resnet50", action="store_true", help="skip the ResNet50")
    parser.add_argument("--only", nargs="+", choices=sorted(MODELS), help="just these models")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--next-run", nargs=2, metavar=("MODEL", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from landscape_dist.model.runtime import import_tensorflow_quietly  # Keras on TensorFlow

    import_tensorflow_quietly()
    if args.next_run:
        _run_next(*args.next_run[:1], args.quick, args.next_run[1])
        return 0

    ceiling = matmul_ceiling()
    names = args.only or [n for n in MODELS if not (args.no_resnet50 and n == "resnet50")]
    rows = []
    for name in names:
        rows.append(bench(name, args.quick, ceiling))
        print(f"{name}: done", file=sys.stderr, flush=True)
    _print(rows, ceiling)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": machine(), "ceiling_gflops": ceiling, "rows": rows}, out,
                      indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
