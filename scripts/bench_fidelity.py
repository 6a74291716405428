"""Two fidelities against the full sweep, in one run on one machine.

    python scripts/bench_fidelity.py [--runs digits:257:300:17 resnet:65:128:17] [--extra 0]
                                     [--resnet-inputs 1024] [--json FILE] [--keep DIR]

Each run ``workload:points:examples:coarse`` trains the workload briefly with a fixed seed (as
``scripts/benchmark.py`` does for its refinement rows), then sweeps one ``points`` x ``points``
random slice in process twice: on every example at every point (the reference, computed once),
and with two fidelities (``grid.fidelity: {examples, coarse, extra}``, the refinement's defaults).
Prints one table with the float32 matmul ceiling: full-data points, subset points, both times,
their ratio (of wall time, and of the process's CPU time, which other work on a shared machine
disturbs less), the largest relative difference of the estimated picture from the full sweep and
the contour shift (the largest distance, in grid cells, from a point on the wrong side of a
contour line to the full sweep's line; 25 log-spaced levels). It also gives the largest relative
difference of a stored full-data value from the full sweep's at its point (float32 rounding:
the two sweeps' evaluators may choose different strategies). ``--keep DIR`` keeps the trained
workloads and full sweeps for later runs with other settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmark import machine, timed_sweep, workload, matmul_ceiling  # noqa: E402

import numpy as np  # noqa: E402


def _two_fidelity_sweep(model_file: str, data_file: str, n: int, where: str, examples: int,
                        coarse: int, extra: int):
    """The n x n slice of ``timed_sweep`` with two fidelities, in process: (seconds, surface).
    The workers are built before the clock starts, as for the full sweep."""
    from landscape_dist.commands import sweep
    from landscape_dist.config import config_from_dict
    from landscape_dist.execution import InProcessPool
    from landscape_dist.model.sources import ModelSpec
    from landscape_dist.store.surface import read_surface
    from landscape_dist.sweeping.inputs import data_specs

    config = config_from_dict({
        "model": {"source": model_file}, "data": {"source": data_file},
        "grid": {"x": {"min": -1.0, "max": 1.0, "points": n},
                 "y": {"min": -1.0, "max": 1.0, "points": n}, "tile": [8, 8],
                 "fidelity": {"examples": examples, "coarse": coarse, "extra": extra}},
        "slices": [{"name": "r", "directions": {"seed": 1}}]})
    pool = InProcessPool(ModelSpec.from_source(model_file), data_specs(config), config.evaluation)
    t0 = time.perf_counter()
    sweep(config, where, pool=pool, progress=False)
    seconds = time.perf_counter() - t0
    return seconds, read_surface(os.path.join(where, "surface.h5"))["r"]


def bench_fidelity(name: str, n: int, examples: int, coarse: int, extra: int, folder: str,
                   resnet_inputs: int = 1024) -> dict:
    """One run (see the module's description): its row."""
    from landscape_dist.core.refine import contour_shift

    from landscape_dist.store.surface import read_surface

    model_file, data_file = os.path.join(folder, f"{name}.keras"), os.path.join(folder, f"{name}.npz")
    if not os.path.exists(model_file):  # a kept folder's trained workload is used again
        model_file, data_file = workload(name, folder, resnet_inputs)
    row = {"workload": name, "grid": f"{n}x{n}", "points": n * n, "examples": examples,
           "coarse": coarse, "extra": extra, "inputs": len(np.load(data_file)["y"])}
    where = os.path.join(folder, f"fidelity-{name}-{n}")
    two_dir = f"{where}-two-{examples}-{coarse}-{extra}"
    if os.path.exists(two_dir):
        import shutil

        shutil.rmtree(two_dir)
    cpu = time.process_time()
    row["two_s"], two = _two_fidelity_sweep(model_file, data_file, n, two_dir, examples,
                                            coarse, extra)
    row["two_cpu_s"] = time.process_time() - cpu
    timing = where + "-full.json"
    if os.path.exists(timing):  # a kept folder's full sweep: computed once
        full = read_surface(os.path.join(where + "-full", "surface.h5"))["r"]
        with open(timing) as f:
            kept = json.load(f)
        row["full_s"], row["full_cpu_s"] = kept["full_s"], kept.get("full_cpu_s", float("nan"))
    else:
        cpu = time.process_time()
        row["full_s"], full = timed_sweep(model_file, data_file, n, where + "-full", refine=False)
        row["full_cpu_s"] = time.process_time() - cpu
        with open(timing, "w") as f:
            json.dump({"full_s": row["full_s"], "full_cpu_s": row["full_cpu_s"]}, f)
    reference, picture, done = full.values["loss"], two.filled["loss"], two.done
    row["stored_max_rel_diff"] = float(np.max(np.abs(two.values["loss"][done] - reference[done])
                                              / np.abs(reference[done])))
    row["full_points"], row["cheap_points"] = int(done.sum()), int(two.cheap_done.sum())
    row["of"] = two.fidelity["of"]
    row["ratio"] = row["full_s"] / row["two_s"]
    row["cpu_ratio"] = row["full_cpu_s"] / row["two_cpu_s"]
    row["max_rel_diff"] = float(np.nanmax(np.abs(picture - reference) / np.abs(reference)))
    row["contour_shift_cells"] = contour_shift(picture, reference)
    row["largest_std_rel"] = float(np.nanmax(two.filled_std["loss"] / np.abs(picture)))
    return row


class _kept:  # noqa: N801 - a context manager, like TemporaryDirectory
    def __init__(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        self.folder = folder

    def __enter__(self):
        return self.folder

    def __exit__(self, *exc):
        return False


def print_table(rows, ceiling: float) -> None:
    print(f"\ntwo fidelities (grid.fidelity; refinement defaults: tol 0.01, shift 0.25, 25 log "
          f"levels), in process; float32 matmul ceiling {ceiling:.1f} GFLOP/s")
    print("| model | grid | full-data points | subset points | full sweep | two fidelities | "
          "ratio (CPU time) | largest rel. difference | contour shift |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} ({r['inputs']:,} inputs) | {r['grid']} | {r['full_points']:,} of {r['points']:,} | "
              f"{r['cheap_points']:,} ({r['examples']:,} of {r['of']:,} examples) | "
              f"{r['full_s']:.1f} s | {r['two_s']:.1f} s | {r['ratio']:.1f}x ({r['cpu_ratio']:.1f}x) | "
              f"{100 * r['max_rel_diff']:.2f}% | {r['contour_shift_cells']:.0f} cell(s) |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["digits:257:300:17"],
                        help="workload:points:examples:coarse (workload: parabola, digits, resnet)")
    parser.add_argument("--extra", type=int, default=0, help="grid.fidelity.extra")
    parser.add_argument("--resnet-inputs", type=int, default=1024)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--keep", help="work in this folder and keep it: a trained workload and "
                        "a full sweep found there are used again (its time as measured then)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    ceiling = matmul_ceiling()
    rows = []
    with (tempfile.TemporaryDirectory() if args.keep is None else _kept(args.keep)) as tmp:
        for spec in args.runs:
            name, n, examples, coarse = spec.split(":")
            rows.append(bench_fidelity(name, int(n), int(examples), int(coarse), args.extra, tmp,
                                       args.resnet_inputs))
            print(json.dumps(rows[-1]), flush=True)
    print(f"machine: {machine()}, tensorflow {tf.__version__}")
    print_table(rows, ceiling)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ceiling_gflops": ceiling, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
