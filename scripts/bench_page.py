"""The interactive page of a large slice: its size, how long it takes to write, the memory it takes.

    python scripts/bench_page.py [--points 1001] [--json FILE]

Sweeps one ``--points`` x ``--points`` slice of the seed parabola MLP in process (a throwaway
folder), then writes the `html` format alone with ``landscape-dist plot`` in a fresh interpreter
and reports the page's size, the seconds the command took and that process's peak memory, beside
the surface file's size. The matmul ceiling measured in the same run heads the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import matmul_ceiling  # noqa: E402

CONFIG = """\
model: {{source: parabola}}
data: {{source: parabola}}
grid:
  x: {{min: -1.0, max: 1.0, points: {n}}}
  y: {{min: -1.0, max: 1.0, points: {n}}}
  tile: [64, 64]
slices:
  - name: random
    directions: {{kind: random, normalization: filter, ignore: biasbn, seed: 1}}
plot: {{formats: [html]}}
"""

# The page is written in a process of its own, which reports its own peak resident memory.
PLOT = """\
import resource, sys, time
from landscape_dist.cli import main
start = time.perf_counter()
code = main(["plot", sys.argv[1], "--out", sys.argv[2], "--format", "html"])
seconds = time.perf_counter() - start
print(code, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
"""


def page_row(points: int, folder: Path) -> dict:
    """Sweep a ``points`` x ``points`` slice into ``folder``, then time writing its page."""
    config = folder / "page.yaml"
    config.write_text(CONFIG.format(n=points))
    out = folder / "out"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "landscape_dist.cli", "sweep", str(config), "--out",
                    str(out), "--in-process"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    sweep_s = time.perf_counter() - start
    done = subprocess.run([sys.executable, "-c", PLOT, str(out / "surface.h5"), str(out)], check=True,
                          capture_output=True, text=True)
    code, seconds, peak_mb = done.stdout.split()[-3:]
    if int(code) != 0:
        raise SystemExit(f"plot failed: {done.stderr.strip()}")
    page = out / "landscape.html"
    return {"points": points, "sweep_s": sweep_s, "page_mb": page.stat().st_size / 2**20,
            "write_s": float(seconds), "peak_mb": float(peak_mb),
            "surface_mb": (out / "surface.h5").stat().st_size / 2**20}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1001, help="points per axis (default 1001)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    ceiling = matmul_ceiling()
    with tempfile.TemporaryDirectory() as tmp:
        row = page_row(args.points, Path(tmp))
    print(f"float32 matmul ceiling: {ceiling:.0f} GFLOP/s (all cores)\n")
    print("| grid | surface file | page | page written in | peak memory of `plot` |")
    print("|---|---|---|---|---|")
    print(f"| {row['points']}x{row['points']} | {row['surface_mb']:.1f} MB | "
          f"{row['page_mb']:.1f} MB | {row['write_s']:.1f} s | {row['peak_mb']:.0f} MB |")
    if args.json:
        Path(args.json).write_text(json.dumps({"ceiling_gflops": ceiling, **row}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
