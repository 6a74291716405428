"""What the driver alone sustains: a whole ``sweep`` (tiles queued, results gathered, the journal
appended and synced, the surface file written, the callbacks told) on a backend whose workers
answer at once, so that only the driver's work is timed.

    python scripts/bench_driver.py [--points 101,1001,2001,4001] [--tile 16] [--workers 8]

Prints a table: per grid, the tiles and points per second from the first tile to the last, the
driver's resident memory when 10% and 90% of the tiles were in (flat means the driver keeps no
per-tile state), and the whole command's seconds; then the float32 matmul rate this machine
reached in the same run, for scale. The workers are fakes: each answers ``ready`` as a real
worker of the seed's model does and returns zeros for every quantity.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np

from landscape_dist.callbacks import SweepCallback
from landscape_dist.commands import sweep
from landscape_dist.config import config_from_dict
from landscape_dist.execution import WorkerPool
from landscape_dist.execution.worker import LandscapeWorker
from landscape_dist.model.sources import DataSpec, ModelSpec


class Answered:
    """A future that is done when made."""

    def __init__(self, value):
        self.value = value


class InstantWorker:
    """Answers as a worker of ``info`` would, at once: zeros for every quantity part."""

    def __init__(self, info: dict):
        self.info = info
        self.parts = [p.name for p in info["quantities"].parts]

    def ready(self):
        return self.info

    def evaluate(self, which, items):
        return {name: np.zeros(len(items)) for name in self.parts}

    def set_plane(self, *args):
        return True

    def select_quantities(self, names):
        return True

    def choices(self):
        return {}

    def close(self):
        return True


class InstantBackend:
    """The scheduler's backend adapter over :class:`InstantWorker` s."""

    def __init__(self, info: dict):
        self.info = info

    def start(self, shard):
        return InstantWorker(self.info)

    def send(self, handle, method, *args):
        return Answered(getattr(handle, method)(*args))

    def wait(self, futures, timeout, num_returns=1):
        return list(futures)

    def result(self, future, timeout=None):
        return future.value

    def discard(self, handle):
        pass

    def share(self, value):
        return value


def instant_pool(config, workers: int) -> WorkerPool:
    """A pool of ``workers`` instant workers described by one real worker of ``config``."""
    real = LandscapeWorker(ModelSpec.from_source(config.model.source), DataSpec(config.data.source),
                           config.evaluation)
    return WorkerPool(InstantBackend(real.ready()), config.cluster, workers, 1)


class Clock(SweepCallback):
    """When the first and the last tile came in, and the driver's memory at 10% and 90%."""

    def __init__(self, tiles: int):
        self.tiles, self.seen, self.first, self.last, self.rss = tiles, 0, None, None, {}

    def on_tile_end(self, name, tile, result):
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.seen += 1
        for mark in (0.1, 0.9):
            if self.seen == max(1, int(mark * self.tiles)):
                self.rss[mark] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def run(points: int, tile: int, workers: int) -> dict:
    config = config_from_dict({"grid": {"x": {"points": points}, "y": {"points": points},
                                        "tile": [tile, tile]},
                               "cluster": {"backend": "local"}})
    tiles = (-(-points // tile)) ** 2
    clock = Clock(tiles)
    pool = instant_pool(config, workers)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        sweep(config, out, pool=pool, callbacks=[clock], progress=False)
        whole = time.perf_counter() - t0
    span = max(clock.last - clock.first, 1e-9)
    return {"points": points * points, "tiles": tiles, "tiles_per_s": (tiles - 1) / span,
            "points_per_s": (points * points) * (tiles - 1) / tiles / span,
            "rss_10": clock.rss.get(0.1), "rss_90": clock.rss.get(0.9), "seconds": whole}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="101,1001,2001,4001",
                        help="points per axis of each grid, comma-separated")
    parser.add_argument("--tile", type=int, default=16, help="tile side (points)")
    parser.add_argument("--workers", type=int, default=8, help="instant workers")
    args = parser.parse_args()
    rows = [run(int(n), args.tile, args.workers) for n in args.points.split(",")]
    print("| grid | tiles | tiles/s | points/s | driver RSS at 10% / 90% of tiles | whole sweep |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        n = int(round(r["points"] ** 0.5))
        print(f"| {n} x {n} | {r['tiles']:,} | {r['tiles_per_s']:,.0f} | {r['points_per_s']:,.0f} "
              f"| {r['rss_10']:,.0f} / {r['rss_90']:,.0f} MiB | {r['seconds']:.1f} s |")
    print(f"\n{args.tile}x{args.tile} tiles, {args.workers} instant workers; float32 matmul on this "
          f"machine in the same run: {matmul_gflops():,.0f} GFLOP/s")


if __name__ == "__main__":
    main()
