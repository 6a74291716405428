"""Throughput of the evaluation methods, in one run on one machine.

    python scripts/benchmark.py [--grid 101] [--cnn-grid 21] [--large-grid 1001] [--only curvature] [--json FILE]

For the parabola MLP and the digits CNN: grid points per second of (i) the per-point Keras method
(``set_weights`` then ``test_on_batch`` on the whole dataset), (ii) the in-process compiled
evaluator (with and without the first-layer shortcut), (iii) the Ray driver with 1 and 2 workers
(actor start-up excluded, tile evaluation, journal and file writes included), with the achieved
GFLOP/s against a float32 matmul ceiling measured in the same run; a scaling table over 1 and 2
workers and 1 and 2 simulated nodes; the driver's memory over a ``--large-grid`` sweep; and
eigenvalue-map points per second (batched Lanczos against one ``eigsh`` per point).
Prints tables; ``--json`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import numpy as np  # noqa: E402


def matmul_ceiling(n: int = 2048, repeats: int = 10, trials: int = 3) -> float:
    """Float32 matmul GFLOP/s of this process (all cores), best of ``trials``."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.matmul(a, b).numpy()
    best = 0.0
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(repeats):
            c = tf.matmul(a, b)
        c.numpy()
        best = max(best, 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9)
    return best


def one_core_ceiling() -> float:
    """The same ceiling for one core (what a 1-CPU Ray worker has), measured in a fresh process
    whose TensorFlow uses one thread."""
    import subprocess

    code = ("import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; sys.path.insert(0, {!r}); "
            "import tensorflow as tf; tf.config.threading.set_intra_op_parallelism_threads(1); "
            "tf.config.threading.set_inter_op_parallelism_threads(1); "
            "import benchmark; print(benchmark.matmul_ceiling())").format(os.path.dirname(__file__))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    """The CPU's model name, its architecture and core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name} ({platform.machine()}), {os.cpu_count()} cores"


def rss_mb() -> float:
    """Current resident memory of this process in MiB (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup(source):
    from landscape_dist.core.directions import random_directions
    from landscape_dist.model.sources import DataSpec, ModelSpec

    model = ModelSpec.from_source(source).build()
    x, y = DataSpec(source).load()
    from landscape_dist.core.layout import WeightLayout

    layout = WeightLayout.from_variables(model.trainable_variables)
    centre = layout.flatten([v.numpy() for v in model.trainable_variables])
    directions = random_directions(centre, layout, 2, np.random.default_rng(0))
    return model, x, y, layout, centre, directions


def _grid(n):
    xs = np.linspace(-1, 1, n)
    yy, xx = np.meshgrid(xs, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


def bench_per_point(source, n_points):
    """The method of the reference code: set the weights from Python, run one test batch."""
    from landscape_dist.model.reference import points_to_weights

    model, x, y, layout, centre, directions = _setup(source)
    coords = _grid(11)[:n_points]
    weights = points_to_weights(centre, directions, coords)
    model.test_on_batch(x, y)  # warm-up: builds the test function
    best = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        for row in weights:
            model.set_weights(layout.unflatten(row) + [v.numpy() for v in model.non_trainable_variables])
            model.test_on_batch(x, y)
        best = max(best, n_points / (time.perf_counter() - t0))
    return best


def bench_in_process(source, grid) -> tuple[dict, list[dict]]:
    """In process, all cores: the evaluator's strategy chosen by timing (``tune``), then every
    strategy it timed forced in turn; points/s over the whole grid, best of 2 (compiled first).
    Returns the tuned evaluator's choice and one row per strategy."""
    from landscape_dist.model.evaluator import LandscapeEvaluator
    from landscape_dist.model.strategy import Strategy

    model, x, y, layout, centre, directions = _setup(source)
    coords = _grid(grid)
    tuned = LandscapeEvaluator(model, x, y, tune=True).set_plane(centre, directions)
    tuned.evaluate(coords[:max(tuned.points_per_call, 64)])  # times the strategies on these
    choice = tuned.choice
    chosen = Strategy(choice["method"], choice["shortcut"], choice["fold"], choice["xla"],
                      choice["parallel"], choice["fallback"])
    rows = []
    # a grid too small to time strategies on is measured with the default one alone
    for strategy in tuned.timed_strategies or (chosen,):
        ev = LandscapeEvaluator(model, x, y).set_plane(centre, directions)
        ev.force_strategy(strategy)
        if strategy == chosen:
            ev.points_per_call = choice["points_per_call"]
        ev.evaluate(coords[:ev.points_per_call])  # compiles
        best = 0.0
        for _ in range(2):
            t0 = time.perf_counter()
            ev.evaluate(coords)
            best = max(best, len(coords) / (time.perf_counter() - t0))
        rows.append({"strategy": strategy.label, "chosen": strategy == chosen,
                     "points_per_call": ev.points_per_call, "points_per_s": best})
    return choice, rows


def _memory_probe():
    """A sweep callback recording the driver's RSS after the first tile and its peak after."""
    from landscape_dist.callbacks import SweepCallback

    class MemoryProbe(SweepCallback):
        def __init__(self):
            self.first = None
            self.peak = 0.0
            self.tiles = 0

        def on_tile_end(self, name, tile, result):
            now = rss_mb()
            self.tiles += 1
            if self.first is None:
                self.first = now
            self.peak = max(self.peak, now)

    return MemoryProbe()


def bench_ray(source, grid, workers, tile, repeats=2, probe=None, order="coarse_to_fine"):
    """Points/s of full sweeps through the Ray driver (best of ``repeats``), actors warmed up."""
    from landscape_dist.config import config_from_dict
    from landscape_dist.execution import RayPool
    from landscape_dist.model.sources import DataSpec, ModelSpec
    from landscape_dist.commands import sweep

    config = config_from_dict({
        "model": {"source": source}, "data": {"source": source},
        "grid": {"x": {"points": grid}, "y": {"points": grid}, "tile": [tile, tile], "order": order},
        "slices": [{"name": "random"}], "cluster": {"num_workers": workers}})
    pool = RayPool(ModelSpec.from_source(source), DataSpec(source), config.evaluation, config.cluster)
    best = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            warm = config_from_dict({**config.to_dict(), "slices": [{"name": "random"}],
                                     "grid": {"x": {"points": tile}, "y": {"points": tile},
                                              "tile": [tile, tile]}})
            sweep(warm, f"{tmp}/warm", pool=pool, progress=False)  # compile on every worker
            for i in range(repeats):
                summary = sweep(config, f"{tmp}/{i}", pool=pool, progress=False,
                                callbacks=[probe] if probe is not None else None)
                best = max(best, summary["slices"]["random"]["points_per_s"])
    finally:
        pool.close()
    return best


def _ray_init(nodes: int):
    """A local Ray with 2 CPUs: one node, or a simulated cluster of ``nodes`` nodes x 1 CPU."""
    import ray

    kwargs = dict(log_to_driver=False, logging_level=logging.ERROR)
    if nodes == 1:
        ray.init(address="local", num_cpus=2, include_dashboard=False, **kwargs)
        return None
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, **kwargs)
    cluster.wait_for_nodes()
    return cluster


def resnet_model(seed: int = 0):
    """The ResNet-style workload: conv3x3(16)-BN-ReLU, three stages of one basic residual block
    (16/32/64 channels, stride 2 in stages 2 and 3, 1x1 projection shortcuts), global average
    pooling, Dense(10); on 32x32x3 inputs."""
    import keras
    from keras import layers

    init = keras.initializers.HeNormal(seed=seed)

    def conv(x, filters, kernel, stride=1):
        return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                             kernel_initializer=init)(x)

    inputs = keras.Input((32, 32, 3))
    x = layers.ReLU()(layers.BatchNormalization()(conv(inputs, 16, 3)))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        h = layers.ReLU()(layers.BatchNormalization()(conv(x, filters, 3, stride)))
        h = layers.BatchNormalization()(conv(h, filters, 3))
        shortcut = layers.BatchNormalization()(conv(x, filters, 1, stride))
        x = layers.ReLU()(layers.Add()([h, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    model = keras.Model(inputs, outputs, name="resnet_style")
    model.compile(optimizer="sgd", metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def resnet_data(n: int = 1024, seed: int = 0):
    """Random 32x32x3 images with learnable labels: the class whose fixed random template the
    image's 4x4-pooled version matches best (so a trained net has a basin worth drawing)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 32, 32, 3)).astype(np.float32)
    pooled = x.reshape(n, 8, 4, 8, 4, 3).mean(axis=(2, 4)).reshape(n, -1)
    templates = np.random.default_rng(seed + 1).standard_normal((pooled.shape[1], 10))
    return x, np.argmax(pooled @ templates, axis=1).astype(np.int32)


def bench_resnet(points: int, per_point_points: int, ceiling: float) -> dict:
    """Grid points per second on the ResNet-style net: the per-point Keras method, and our
    evaluator with its strategy chosen by timing (in process, all cores)."""
    from landscape_dist.core.directions import random_directions
    from landscape_dist.core.layout import WeightLayout
    from landscape_dist.model.evaluator import LandscapeEvaluator
    from landscape_dist.model.reference import flops_per_example, points_to_weights

    model = resnet_model()
    x, y = resnet_data()
    model.evaluate(x[:2], y[:2], verbose=0)
    layout = WeightLayout.from_variables(model.trainable_variables)
    centre = layout.flatten([v.numpy() for v in model.trainable_variables])
    directions = random_directions(centre, layout, 2, np.random.default_rng(0))
    flop = flops_per_example(model) * len(x)
    coords = _grid(11)[:max(points, per_point_points)]
    weights = points_to_weights(centre, directions, coords[:per_point_points])
    model.test_on_batch(x, y)
    t0 = time.perf_counter()
    for row in weights:
        for var, value in zip(model.trainable_variables, layout.unflatten(row)):
            var.assign(value)  # a functional model's weights interleave trainable and not
        model.test_on_batch(x, y)
    per_point = per_point_points / (time.perf_counter() - t0)
    for var, value in zip(model.trainable_variables, layout.unflatten(centre)):
        var.assign(value)
    ev = LandscapeEvaluator(model, x, y, tune=True).set_plane(centre, directions)
    ev.evaluate(coords[:points])  # times the strategies, compiles the chosen one
    rate = 0.0
    for _ in range(2):
        t0 = time.perf_counter()
        ev.evaluate(coords[:points])
        rate = max(rate, points / (time.perf_counter() - t0))
    return {"weights": layout.size, "mflop_per_example": flops_per_example(model) / 1e6,
            "per_point_keras": per_point, "in_process": rate, "gflops": rate * flop / 1e9,
            "ceiling_fraction": rate * flop / 1e9 / ceiling, "choice": ev.choice}


def time_to_first_tile(config: str, out: str) -> dict:
    """Seconds from starting ``landscape-dist sweep`` (2 local Ray workers, one random slice) to
    its first finished tile in the journal, and to its end."""
    import subprocess

    from landscape_dist.store.journal import TileJournal

    journal = os.path.join(out, "surface.h5.journal")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "landscape_dist.cli", "sweep", config, "--out", out,
                             "--no-progress", "slices=[{name: r}]", "cluster.num_workers=2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = None
    while proc.poll() is None:
        if first is None and os.path.exists(journal):
            try:
                _, records, _ = TileJournal.read(journal)
            except OSError:
                records = []
            if any(kind == "tile" for kind, *_ in records):
                first = time.perf_counter() - t0
        time.sleep(0.05)
    return {"first_tile_s": first, "whole_s": time.perf_counter() - t0, "returncode": proc.returncode}


def cli_sweep(config: str, out: str, points: int) -> dict:
    """Wall seconds of ``landscape-dist sweep`` of one points x points slice on 2 local Ray
    workers, the whole command."""
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "landscape_dist.cli", "sweep", config, "--out", out,
                           "--no-progress", "slices=[{name: r}]", f"grid.x.points={points}",
                           f"grid.y.points={points}", "grid.tile=[32,32]",
                           "cluster.num_workers=2"], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    return {"grid": f"{points}x{points}", "seconds": seconds, "points_per_s": points ** 2 / seconds,
            "returncode": proc.returncode}


def bench_curvature(source, grid, per_point_points):
    """Eigenvalue-map points per second (largest and smallest Hessian eigenvalue at each point):
    the tile's Lanczos runs advancing together (one compiled product call per step), against one
    ARPACK ``eigsh`` per point on the same products; and the products per second of each."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    from landscape_dist.config import EvaluationConfig
    from landscape_dist.model.evaluator import LandscapeEvaluator
    from landscape_dist.model.quantities import HessianExtremes

    model, x, y, layout, centre, directions = _setup(source)
    ev = LandscapeEvaluator(model, x, y).set_plane(centre, directions)
    settings = EvaluationConfig()
    kind = HessianExtremes(ev, ("hessian_max", "hessian_min"), settings)
    coords = _grid(grid).astype(np.float64) * 0.5
    kind.compute("coords", coords[:2])  # compile, and the timed choice of the product method
    products = kind.products
    done = products.products_done
    t0 = time.perf_counter()
    batched = kind.compute("coords", coords)
    seconds = time.perf_counter() - t0
    batched_products = products.products_done - done
    weights = ev.weights_at(coords[:per_point_points])
    done = products.products_done
    t0 = time.perf_counter()
    worst = 0.0
    for i, w in enumerate(weights):
        op = LinearOperator((layout.size, layout.size), dtype=np.float64,
                            matvec=lambda v, w=w: products.products(w[None], v[None])[0])
        ends = eigsh(op, k=2, which="BE", tol=settings.lanczos_tol, return_eigenvectors=False,
                     v0=np.random.default_rng(settings.lanczos_seed).standard_normal(layout.size))
        worst = max(worst, abs(ends.max() - batched["hessian_max"][i]) / abs(ends.max()),
                    abs(ends.min() - batched["hessian_min"][i]) / abs(ends.max()))
    single = time.perf_counter() - t0
    single_products = products.products_done - done
    return {"model": source, "points": len(coords), "batched_points_per_s": len(coords) / seconds,
            "batched_products_per_s": batched_products / seconds,
            "batched_products_per_point": batched_products / len(coords),
            "eigsh_points": len(weights), "eigsh_points_per_s": len(weights) / single,
            "eigsh_products_per_s": single_products / single,
            "eigsh_products_per_point": single_products / len(weights),
            "speedup": (len(coords) / seconds) / (len(weights) / single),
            "largest_relative_difference": worst, "method": products.method}


def _print_curvature(c):
    print(f"\neigenvalue map ({c['model']} MLP, hessian_max and hessian_min, one worker in process, "
          f"product method {c['method']}):")
    print(f"{'method':<28} {'points':>6} {'points/s':>9} {'products/s':>11} {'products/pt':>12}")
    print(f"{'batched Lanczos (per tile)':<28} {c['points']:>6} {c['batched_points_per_s']:>9.2f} "
          f"{c['batched_products_per_s']:>11.0f} {c['batched_products_per_point']:>12.1f}")
    print(f"{'eigsh per point (ARPACK)':<28} {c['eigsh_points']:>6} {c['eigsh_points_per_s']:>9.2f} "
          f"{c['eigsh_products_per_s']:>11.0f} {c['eigsh_products_per_point']:>12.1f}")
    print(f"batched / per point: {c['speedup']:.1f}x; largest difference of the eigenvalues, "
          f"relative to the largest: {c['largest_relative_difference']:.1e}")


def _speed(args, per_point: float | None = None) -> dict:
    """The ResNet-style row, the time to the first tile and the whole-command sweep (with its
    ratio to ``per_point``, the per-point method's points/s on the seed MLP, where given)."""
    import tensorflow as tf

    ceiling = matmul_ceiling()
    resnet = bench_resnet(args.resnet_points, max(2, args.resnet_points // 4), ceiling)
    config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "parabola.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [time_to_first_tile(config, os.path.join(tmp, f"first{i}")) for i in range(3)]
        first = sorted(runs, key=lambda r: r["first_tile_s"] or float("inf"))[1]  # the median
        first = {**first, "runs_s": [r["first_tile_s"] for r in runs]}
        big = cli_sweep(config, os.path.join(tmp, "big"), args.cli_grid) if args.cli_grid else None
    print(f"machine: {machine()}, tensorflow {tf.__version__}; "
          f"float32 matmul ceiling {ceiling:.1f} GFLOP/s (best of 3)")
    print(f"\nResNet-style net ({resnet['weights']:,} weights, {resnet['mflop_per_example']:.1f} MFLOP "
          f"per example, 1,024 inputs of 32x32x3): per-point Keras {resnet['per_point_keras']:.2f} "
          f"points/s; ours {resnet['in_process']:.2f} points/s = {resnet['gflops']:.1f} GFLOP/s, "
          f"{100 * resnet['ceiling_fraction']:.0f}% of the ceiling; strategy {resnet['choice']}")
    print(f"time to the first tile, parabola 51x51 on 2 Ray workers (whole command): "
          f"{first['first_tile_s']:.1f} s, the median of 3 runs "
          f"({', '.join(f'{r:.1f}' for r in first['runs_s'])} s; command {first['whole_s']:.1f} s)")
    if big:
        ratio = f", {big['points_per_s'] / per_point:.0f}x the per-point method" if per_point else ""
        print(f"landscape-dist sweep of a {big['grid']} slice, 2 Ray workers, whole command: "
              f"{big['seconds']:.0f} s ({big['points_per_s']:,.0f} points/s{ratio}, exit "
              f"{big['returncode']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ceiling_gflops": ceiling, "resnet": resnet, "first_tile": first,
                       "cli_sweep": big}, f, indent=2)
    return {"resnet": resnet, "first_tile": first, "cli_sweep": big}


def workload(name: str, folder: str, resnet_inputs: int) -> tuple[str, str]:
    """A model file and a data file for the refinement rows: the seed MLP, the digits CNN and the
    ResNet-style net (on its learnable random images) trained briefly, with a fixed seed: a
    trained net's landscape has the basin worth resolving."""
    from landscape_dist.model import examples

    import keras

    keras.utils.set_random_seed(0)  # the same trained weights in every run
    if name == "resnet":
        model, (x, y) = resnet_model(), resnet_data(resnet_inputs)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    else:
        model, (x, y) = examples.MODELS[name](), examples.DATASETS[name]()
    model.fit(x, y, epochs={"parabola": 60, "digits": 15, "resnet": 10}[name], batch_size=32,
              verbose=0)
    model_file, data_file = os.path.join(folder, f"{name}.keras"), os.path.join(folder, f"{name}.npz")
    model.save(model_file)
    np.savez(data_file, x=x, y=y)
    return model_file, data_file


def timed_sweep(model_file: str, data_file: str, n: int, where: str, refine: bool,
                 examples: int | None = None):
    """One n x n random slice (seed 1) swept in process into ``where``: (seconds, surface)."""
    from landscape_dist.config import config_from_dict
    from landscape_dist.execution import InProcessPool
    from landscape_dist.model.sources import DataSpec, ModelSpec
    from landscape_dist.commands import sweep
    from landscape_dist.store.surface import read_surface

    config = config_from_dict({
        "model": {"source": model_file}, "data": {"source": data_file},
        "grid": {"x": {"min": -1.0, "max": 1.0, "points": n},
                 "y": {"min": -1.0, "max": 1.0, "points": n},
                 "tile": [8, 8], **({"refine": True} if refine else {})},
        "evaluation": {"examples": examples},
        "slices": [{"name": "r", "directions": {"seed": 1}}]})
    pool = InProcessPool(ModelSpec.from_source(model_file), DataSpec(data_file, examples=examples),
                         config.evaluation)
    t0 = time.perf_counter()
    sweep(config, where, pool=pool, progress=False)
    seconds = time.perf_counter() - t0
    return seconds, read_surface(os.path.join(where, "surface.h5"))["r"]


def bench_refine(name: str, n: int, folder: str, resnet_inputs: int = 1024) -> dict:
    """One n x n random slice swept in process twice, refined (grid.refine defaults) and full:
    points evaluated, wall time, and how far the refined picture lies from the full sweep (the
    largest relative difference, and contour lines' distance in grid cells)."""
    from landscape_dist.core.refine import contour_shift

    model_file, data_file = workload(name, folder, resnet_inputs)
    out = {"workload": name, "grid": f"{n}x{n}", "points": n * n}
    out["full_s"], full = timed_sweep(model_file, data_file, n,
                                       os.path.join(folder, f"{name}-{n}-full"), refine=False)
    out["refined_s"], refined = timed_sweep(model_file, data_file, n,
                                             os.path.join(folder, f"{name}-{n}-refined"), refine=True)
    full, picture = full.values["loss"], refined.filled["loss"]
    out["evaluated"] = int(refined.done.sum())
    out["fewer"] = out["points"] / out["evaluated"]
    out["speedup"] = out["full_s"] / out["refined_s"]
    out["max_rel_diff"] = float(np.nanmax(np.abs(picture - full) / np.abs(full)))
    out["contour_shift_cells"] = contour_shift(picture, full)
    return out


def bench_draft(name: str, n: int, examples: int, folder: str, resnet_inputs: int = 1024,
                refine: bool = False) -> dict:
    """One n x n random slice as a draft on ``examples`` examples and as the full sweep (in
    process): times, and the fraction of points whose full loss lies within 3 (and 2) standard
    errors of the draft's; with ``refine`` both are refined (the draft-and-refine picture)."""
    from landscape_dist.core.refine import contour_shift

    model_file, data_file = workload(name, folder, resnet_inputs)
    out = {"workload": name, "grid": f"{n}x{n}", "examples": examples, "refined": refine}
    where = os.path.join(folder, f"draft-{name}-{n}-{refine}")
    out["full_s"], full = timed_sweep(model_file, data_file, n, where + "-full", refine)
    out["draft_s"], draft = timed_sweep(model_file, data_file, n, where + "-draft", refine, examples)
    both = full.done & draft.done
    z = np.abs(full.values["loss"] - draft.values["loss"])[both] / draft.values["loss_stderr"][both]
    out["of"] = int(draft.meta["subset"]["loss_stderr"]["of"])
    out["within_3se"] = float(np.mean(z <= 3))
    out["within_2se"] = float(np.mean(z <= 2))
    out["speedup"] = out["full_s"] / out["draft_s"]
    out["contour_shift_cells"] = contour_shift(draft.shown["loss"], full.shown["loss"])
    return out


def _print_refine(rows, ceiling):
    print(f"\nadaptive refinement (grid.refine defaults: tol 0.01, shift 0.25, 25 log levels), in "
          f"process; float32 matmul ceiling {ceiling:.1f} GFLOP/s")
    print("| workload | grid | points evaluated | fewer | full s | refined s | faster | "
          "max rel. diff | contour shift (cells) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['grid']} | {r['evaluated']:,} of {r['points']:,} | "
              f"{r['fewer']:.1f}x | {r['full_s']:.1f} | {r['refined_s']:.1f} | {r['speedup']:.1f}x | "
              f"{100 * r['max_rel_diff']:.2f}% | {r['contour_shift_cells']:.2f} |")


def _print_drafts(rows):
    print("\ndrafts on a subset of the examples (evaluation.examples), in process, against the "
          "sweep on every example")
    print("| workload | grid | examples | full s | draft s | faster | full within 3 / 2 SE of "
          "the draft | contour shift (cells) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']}{' (both refined)' if r['refined'] else ''} | {r['grid']} | "
              f"{r['examples']:,} of {r['of']:,} | {r['full_s']:.1f} | {r['draft_s']:.1f} | "
              f"{r['speedup']:.1f}x | {100 * r['within_3se']:.1f}% / {100 * r['within_2se']:.1f}% | "
              f"{r['contour_shift_cells']:.2f} |")


def _less_work(args, ceiling: float, before_tables=None) -> tuple[list, list]:
    """The refinement and draft rows (``--refine``, ``--drafts``), run and printed."""
    rows, drafts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.refine:
            name, n = spec.split(":")
            rows.append(bench_refine(name, int(n), tmp, args.resnet_inputs))
        for spec in args.drafts:
            name, n, examples, *refined = spec.split(":")
            drafts.append(bench_draft(name, int(n), int(examples), tmp, args.resnet_inputs,
                                      refine=bool(refined and refined[0] == "refine")))
    if before_tables:
        before_tables()
    if rows:
        _print_refine(rows, ceiling)
    if drafts:
        _print_drafts(drafts)
    return rows, drafts


def _refine_rows(args) -> int:
    import tensorflow as tf

    ceiling = matmul_ceiling()
    rows, drafts = _less_work(args, ceiling, lambda: print(
        f"machine: {machine()}, tensorflow {tf.__version__}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ceiling_gflops": ceiling, "refine": rows, "drafts": drafts}, f, indent=2)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=101, help="MLP grid points per side")
    parser.add_argument("--cnn-grid", type=int, default=21, help="CNN grid points per side")
    parser.add_argument("--per-point", type=int, default=60, help="points for the per-point method")
    parser.add_argument("--large-grid", type=int, default=1001,
                        help="MLP grid per side for the driver-memory check (0: skip)")
    parser.add_argument("--curvature-grid", type=int, default=7,
                        help="eigenvalue-map grid per side for the batched Lanczos row (0: skip)")
    parser.add_argument("--curvature-per-point", type=int, default=12,
                        help="points for the one-eigsh-per-point row")
    parser.add_argument("--only", choices=("all", "curvature", "speed", "refine"), default="all",
                        help="run every row, only the eigenvalue-map row, only the ResNet-style "
                             "row, the time to the first tile and the whole-command sweep, or "
                             "only the refinement rows")
    parser.add_argument("--refine", nargs="*", default=["parabola:257", "digits:129"],
                        help="refinement rows, WORKLOAD:POINTS_PER_SIDE (parabola, digits, resnet); "
                             "each sweeps the slice in full too")
    parser.add_argument("--drafts", nargs="*", default=["digits:65:300"],
                        help="draft rows, WORKLOAD:POINTS_PER_SIDE:EXAMPLES[:refine] (with "
                             "':refine' both sweeps are refined); each sweeps the slice in full too")
    parser.add_argument("--resnet-inputs", type=int, default=1024,
                        help="inputs of the ResNet-style workload in the refinement rows")
    parser.add_argument("--resnet-points", type=int, default=16, help="ResNet-style grid points")
    parser.add_argument("--cli-grid", type=int, default=1001,
                        help="points per side of the whole-command sweep (0: skip)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.only == "speed":
        _speed(args)
        return 0
    if args.only == "refine":
        return _refine_rows(args)
    if args.only == "curvature":
        import tensorflow as tf

        ceiling = matmul_ceiling()
        c = bench_curvature("parabola", args.curvature_grid, args.curvature_per_point)
        print(f"machine: {machine()}, tensorflow {tf.__version__}; "
              f"float32 matmul ceiling {ceiling:.1f} GFLOP/s (best of 3)")
        _print_curvature(c)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"ceiling_gflops": ceiling, "curvature": c}, f, indent=2)
        return 0

    import ray
    import tensorflow as tf

    from landscape_dist.model.reference import flops_per_example

    models = (("parabola", args.grid, 17), ("digits", args.cnn_grid, 8))
    ceiling = matmul_ceiling()
    core = one_core_ceiling()
    rows = []
    for source, grid, _ in models:  # in-process first, with no Ray processes running beside it
        model, x, *_ = _setup(source)
        flop = flops_per_example(model) * len(x)
        per_point = bench_per_point(source, args.per_point if source == "parabola" else args.per_point // 3)
        choice, strategies = bench_in_process(source, grid)
        for row in strategies:
            row["gflops"] = row["points_per_s"] * flop / 1e9
            row["ceiling_fraction"] = row["gflops"] / ceiling
        fast = next(r for r in strategies if r["chosen"])["points_per_s"]
        rows.append({"model": source, "grid": f"{grid}x{grid}", "mflop_per_point": flop / 1e6,
                     "per_point_keras": per_point, "in_process": fast, "choice": choice,
                     "strategies": strategies, "speedup_vs_per_point": fast / per_point,
                     "gflops_in_process": fast * flop / 1e9,
                     "ceiling_fraction": fast * flop / 1e9 / ceiling})

    curvature = (bench_curvature("parabola", args.curvature_grid, args.curvature_per_point)
                 if args.curvature_grid else None)

    _ray_init(1)
    for row, (source, grid, tile) in zip(rows, models):
        row["ray_1_worker"] = bench_ray(source, grid, 1, tile)
        row["ray_2_workers"] = bench_ray(source, grid, 2, tile)
        row["ray2_vs_in_process"] = row["ray_2_workers"] / row["in_process"]
    memory = None
    if args.large_grid:
        probe = _memory_probe()
        before = rss_mb()
        rate = bench_ray("parabola", args.large_grid, 2, 32, repeats=1, probe=probe)
        n = args.large_grid ** 2
        memory = {"grid": f"{args.large_grid}x{args.large_grid}", "points_per_s": rate,
                  "tiles": probe.tiles, "rss_before_mb": before, "rss_first_tile_mb": probe.first,
                  "rss_peak_mb": probe.peak, "growth_mb": probe.peak - probe.first,
                  "grid_arrays_mb": n * 8 * 2 / 2 ** 20}  # loss + done mask as float64/bool upper bound
    ray.shutdown()

    cluster = _ray_init(2)
    scaling = []
    for source, grid, tile in models:
        one = next(r for r in rows if r["model"] == source)["ray_1_worker"]
        two_local = next(r for r in rows if r["model"] == source)["ray_2_workers"]
        two_nodes = bench_ray(source, grid, 2, tile)
        for nodes, workers, rate in ((1, 1, one), (1, 2, two_local), (2, 2, two_nodes)):
            scaling.append({"model": source, "nodes": nodes, "workers": workers, "points_per_s": rate,
                            "speedup": rate / one, "efficiency": rate / one / workers})
    ray.shutdown()
    cluster.shutdown()

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {machine()}, tensorflow {tf.__version__}; float32 matmul ceiling "
          f"{ceiling:.1f} GFLOP/s on all cores, {core:.1f} on one (best of 3); driver peak RSS "
          f"{peak_mb:.0f} MiB")
    print("points/s (best of 2-3 runs; in process: the tuned strategy; Ray workers: 1 CPU each, "
          "one-core ceiling):")
    print(f"{'model':<9} {'grid':>8} {'MFLOP/pt':>8} {'per-point':>10} {'in-proc':>9} "
          f"{'x':>6} {'GFLOP/s':>8} {'ceil%':>6} {'ray 1w':>8} {'1w ceil%':>8} {'ray 2w':>8} {'2w/in':>6}")
    for r in rows:
        one_core = r["ray_1_worker"] * r["mflop_per_point"] / 1e3 / core
        print(f"{r['model']:<9} {r['grid']:>8} {r['mflop_per_point']:>8.2f} {r['per_point_keras']:>10.0f} "
              f"{r['in_process']:>9.0f} {r['speedup_vs_per_point']:>6.1f} {r['gflops_in_process']:>8.1f} "
              f"{100 * r['ceiling_fraction']:>5.1f}% {r['ray_1_worker']:>8.0f} {100 * one_core:>7.1f}% "
              f"{r['ray_2_workers']:>8.0f} {r['ray2_vs_in_process']:>6.2f}")
    print("\nin process, each strategy the tuner timed, forced (* the one it chose):")
    print(f"{'model':<9} {'strategy':<36} {'pts/call':>8} {'points/s':>9} {'GFLOP/s':>8} {'ceil%':>6}")
    for r in rows:
        for st in r["strategies"]:
            print(f"{r['model']:<9} {('* ' if st['chosen'] else '  ') + st['strategy']:<36} "
                  f"{st['points_per_call']:>8} {st['points_per_s']:>9.0f} {st['gflops']:>8.1f} "
                  f"{100 * st['ceiling_fraction']:>5.1f}%")
    print("\nscaling (Ray driver; simulated nodes are separate raylets on this machine, 1 CPU each):")
    print(f"{'model':<9} {'nodes':>5} {'workers':>7} {'points/s':>9} {'speedup':>8} {'efficiency':>10}")
    for r in scaling:
        print(f"{r['model']:<9} {r['nodes']:>5} {r['workers']:>7} {r['points_per_s']:>9.0f} "
              f"{r['speedup']:>8.2f} {100 * r['efficiency']:>9.0f}%")
    if memory:
        print(f"\ndriver memory, parabola {memory['grid']} on 2 workers ({memory['tiles']} tiles, "
              f"{memory['points_per_s']:.0f} points/s): RSS {memory['rss_before_mb']:.0f} MiB before, "
              f"{memory['rss_first_tile_mb']:.0f} MiB after the first tile, peak {memory['rss_peak_mb']:.0f} "
              f"MiB; growth {memory['growth_mb']:.1f} MiB (the grid arrays themselves: "
              f"{memory['grid_arrays_mb']:.1f} MiB)")
    if curvature:
        _print_curvature(curvature)
    speed = None
    if args.resnet_points or args.cli_grid:
        print()
        speed = _speed(argparse.Namespace(**{**vars(args), "json": None}),
                       per_point=rows[0]["per_point_keras"])
    refine, drafts = _less_work(args, ceiling)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ceiling_gflops": ceiling, "one_core_ceiling_gflops": core,
                       "driver_peak_rss_mb": peak_mb, "rows": rows,
                       "scaling": scaling, "memory": memory, "curvature": curvature,
                       "refine": refine, "drafts": drafts, "speed": speed}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
