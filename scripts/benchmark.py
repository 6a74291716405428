"""Throughput of the evaluation methods, in one run on one machine.

    python scripts/benchmark.py [--grid 101] [--cnn-grid 21] [--json results.json]

For the parabola MLP and the digits CNN: grid points per second of (i) the per-point Keras method
(``set_weights`` then ``test_on_batch`` on the whole dataset), (ii) the in-process compiled evaluator, (iii) the Ray driver
with 1 and 2 workers (actor start-up excluded, tile evaluation and file writes included), with the
achieved GFLOP/s against a float32 matmul ceiling measured in the same run, and the driver's peak
memory. Prints a table; ``--json`` also writes the numbers.
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


def matmul_ceiling(n: int = 2048, repeats: int = 10) -> float:
    """Float32 matmul GFLOP/s of this process (all cores)."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.matmul(a, b).numpy()
    t0 = time.perf_counter()
    for _ in range(repeats):
        c = tf.matmul(a, b)
    c.numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def _setup(source):
    from landscape_dist.directions import random_directions
    from landscape_dist.models import DataSpec, ModelSpec

    model = ModelSpec.from_source(source).build()
    x, y = DataSpec(source).load()
    from landscape_dist.layout import WeightLayout

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
    from landscape_dist.evaluator import points_to_weights

    model, x, y, layout, centre, directions = _setup(source)
    coords = _grid(11)[:n_points]
    weights = points_to_weights(centre, directions, coords)
    model.test_on_batch(x, y)  # warm-up: builds the test function
    t0 = time.perf_counter()
    for row in weights:
        model.set_weights(layout.unflatten(row) + [v.numpy() for v in model.non_trainable_variables])
        model.test_on_batch(x, y)
    return n_points / (time.perf_counter() - t0)


def bench_in_process(source, grid):
    from landscape_dist.evaluator import LandscapeEvaluator

    model, x, y, layout, centre, directions = _setup(source)
    ev = LandscapeEvaluator(model, x, y).set_plane(centre, directions)
    coords = _grid(grid)
    ev.evaluate(coords[:ev.points_per_call])  # compile
    t0 = time.perf_counter()
    ev.evaluate(coords)
    return len(coords) / (time.perf_counter() - t0), ev.method, ev.points_per_call


def bench_ray(source, grid, workers, tile):
    from landscape_dist.config import config_from_dict
    from landscape_dist.driver import RayPool
    from landscape_dist.models import DataSpec, ModelSpec
    from landscape_dist.pipeline import sweep

    config = config_from_dict({
        "model": {"source": source}, "data": {"source": source},
        "grid": {"x": {"points": grid}, "y": {"points": grid}, "tile": [tile, tile]},
        "slices": [{"name": "random"}], "cluster": {"num_workers": workers}})
    pool = RayPool(ModelSpec.from_source(source), DataSpec(source), config.evaluation, config.cluster)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            warm = config_from_dict({**config.to_dict(), "slices": [{"name": "random"}],
                                     "grid": {"x": {"points": tile}, "y": {"points": tile},
                                              "tile": [tile, tile]}})
            sweep(warm, f"{tmp}/warm", pool=pool, progress=False)  # compile on every worker
            summary = sweep(config, tmp, pool=pool, progress=False)
    finally:
        pool.close()
    return summary["slices"]["random"]["points_per_s"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=101, help="MLP grid points per side")
    parser.add_argument("--cnn-grid", type=int, default=21, help="CNN grid points per side")
    parser.add_argument("--per-point", type=int, default=60, help="points for the per-point method")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    import ray
    import tensorflow as tf

    from landscape_dist.evaluator import flops_per_example

    ceiling = matmul_ceiling()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    rows = []
    for source, grid, tile in (("parabola", args.grid, 26), ("digits", args.cnn_grid, 8)):
        model, x, *_ = _setup(source)
        flop = flops_per_example(model) * len(x)
        per_point = bench_per_point(source, args.per_point if source == "parabola" else args.per_point // 3)
        fast, method, ppc = bench_in_process(source, grid)
        ray1 = bench_ray(source, grid, 1, tile)
        ray2 = bench_ray(source, grid, 2, tile)
        rows.append({"model": source, "grid": f"{grid}x{grid}", "mflop_per_point": flop / 1e6,
                     "per_point_keras": per_point, "in_process": fast, "method": method,
                     "points_per_call": ppc, "ray_1_worker": ray1, "ray_2_workers": ray2,
                     "speedup_vs_per_point": fast / per_point,
                     "gflops_in_process": fast * flop / 1e9,
                     "ceiling_fraction": fast * flop / 1e9 / ceiling,
                     "ray2_vs_in_process": ray2 / fast})
    ray.shutdown()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    header = (f"{'model':<9} {'grid':>8} {'MFLOP/pt':>8} {'per-point':>10} {'in-proc':>9} "
              f"{'x':>6} {'GFLOP/s':>8} {'ceil%':>6} {'ray 1w':>8} {'ray 2w':>8} {'2w/in':>6} method")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, tensorflow {tf.__version__}; "
          f"float32 matmul ceiling {ceiling:.1f} GFLOP/s; driver peak RSS {peak_mb:.0f} MiB")
    print("points/s:")
    print(header)
    for r in rows:
        print(f"{r['model']:<9} {r['grid']:>8} {r['mflop_per_point']:>8.2f} {r['per_point_keras']:>10.0f} "
              f"{r['in_process']:>9.0f} {r['speedup_vs_per_point']:>6.1f} {r['gflops_in_process']:>8.1f} "
              f"{100 * r['ceiling_fraction']:>5.1f}% {r['ray_1_worker']:>8.0f} {r['ray_2_workers']:>8.0f} "
              f"{r['ray2_vs_in_process']:>6.2f} {r['method']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ceiling_gflops": ceiling, "driver_peak_rss_mb": peak_mb, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
