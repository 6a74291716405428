"""What the driver alone sustains: a whole ``sweep`` (tiles queued, results gathered, the journal
appended and synced, the surface file written, the callbacks told) on a backend whose workers
answer at once, so that only the driver's work is timed; with ``--ray N``, the same sweep on N
real Ray actors evaluating the seed's parabola MLP, and where the time goes on both sides.

    python scripts/bench_driver.py [--points 1001,4001] [--tile 16,64] [--workers 1000]
                                   [--ray 8 --ray-points 201 --ray-tile 4]

Prints one table: per run, the tiles and points per second from the first tile to the last,
the driver's resident memory when 10% and 90% of the tiles were in (flat means the driver keeps
no per-tile state), the whole command's seconds, and where the driver's time went per tile
(waiting for answers, taking them (deserialising), sending jobs, making jobs, combining shards,
the journal, the surface file, the callbacks, the rest of the loop; with instant workers,
sending includes their answer); for Ray runs also the
workers' share of that time spent computing (from Ray's timeline). Then the float32 matmul rate
this machine reached in the same run, for scale. The instant workers are fakes: each answers
``ready`` as a real worker of the seed's model does and returns zeros for every quantity.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import logging
import os
import tempfile
import time

import numpy as np

from landscape_dist.callbacks import CallbackList, SweepCallback
from landscape_dist.commands import sweep
from landscape_dist.config import config_from_dict
from landscape_dist.execution import WorkerPool
from landscape_dist.execution.jobs import JobQueue, ShardGather
from landscape_dist.execution.worker import LandscapeWorker
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.store.journal import TileJournal
from landscape_dist.store.preflight import tile_count
from landscape_dist.store.surface import SliceWriter

PHASES = ("waiting", "taking answers", "sending", "making jobs", "combining shards", "journal",
          "surface file", "callbacks")


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

    def choices(self):
        return {}

    def __getattr__(self, method):  # set_plane, select_quantities, close...: done at once
        return lambda *args: True


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


def _settings(points: int, tile: int) -> dict:
    return {"model": {"source": "parabola"}, "data": {"source": "parabola"},
            "grid": {"x": {"points": points}, "y": {"points": points}, "tile": [tile, tile]},
            "slices": [{"name": "random", "directions": {"seed": 1}}]}


@functools.lru_cache(maxsize=1)
def _ready_info() -> dict:
    """What one real worker of the seed's model answers to ``ready`` (built once)."""
    config = config_from_dict(_settings(11, 4))
    real = LandscapeWorker(ModelSpec.from_source(config.model.source),
                           DataSpec(config.data.source), config.evaluation)
    return real.ready()


def instant_pool(config, workers: int) -> WorkerPool:
    """A pool of ``workers`` instant workers described by one real worker of the seed's model."""
    return WorkerPool(InstantBackend(_ready_info()), config.cluster, workers, 1)


def resident_mib() -> float:
    """This process's resident memory now (not its peak), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


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
                self.rss[mark] = resident_mib()


class Phases:
    """Seconds the driver spends in each phase of its loop, by wrapping the methods that do
    them (restored on exit); the backend's methods are wrapped on the pool's own adapter."""

    def __init__(self, backend):
        self.seconds = collections.Counter()
        self._targets = [(backend, "wait", "waiting"), (backend, "result", "taking answers"),
                         (backend, "send", "sending"), (JobQueue, "take", "making jobs"),
                         (ShardGather, "add", "combining shards"),
                         (TileJournal, "append_tiles", "journal"),
                         (SliceWriter, "write_tile", "surface file"),
                         (SliceWriter, "flush", "surface file"),
                         (CallbackList, "on_tile_end", "callbacks"),
                         (WorkerPool, "run_batches", "loop")]
        self._saved = []

    def _timed(self, function, phase):
        seconds = self.seconds

        @functools.wraps(function)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[phase] += time.perf_counter() - t0
        return timed

    def __enter__(self):
        for owner, name, phase in self._targets:
            original = owner.__dict__.get(name, getattr(owner, name))
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(getattr(owner, name), phase))
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._saved):
            if isinstance(owner, type):
                setattr(owner, name, original)
            else:
                delattr(owner, name)  # the instance's wrapper: its class's method shows again
        return False


def run(config, pool, label: str) -> dict:
    """One whole sweep of ``config`` on ``pool``; its rates, memory and phases."""
    grid = config.slices[0].grid
    tiles = tile_count(grid.shape, grid.tile, grid.order)
    points = grid.shape[0] * grid.shape[1]
    clock = Clock(tiles)
    with tempfile.TemporaryDirectory() as out, Phases(pool.backend) as phases:
        t0 = time.perf_counter()
        sweep(config, out, pool=pool, callbacks=[clock], progress=False)
        whole = time.perf_counter() - t0
    span = max(clock.last - clock.first, 1e-9)
    return {"label": label, "grid": grid.shape, "tile": grid.tile, "tiles": tiles,
            "tiles_per_s": (tiles - 1) / span, "points_per_s": points * (tiles - 1) / tiles / span,
            "rss_10": clock.rss.get(0.1), "rss_90": clock.rss.get(0.9), "seconds": whole,
            "span": span, "phases": dict(phases.seconds)}


def instant_run(points: int, tile: int, workers: int) -> dict:
    config = config_from_dict({**_settings(points, tile), "cluster": {"backend": "local"}})
    return run(config, instant_pool(config, workers), f"{workers:,} instant workers")


def ray_run(actors: int, points: int, tile: int) -> dict:
    """The sweep on ``actors`` Ray actors (one CPU each, Ray told this machine has that many)
    of the seed's model; the workers' time from Ray's timeline."""
    import ray

    from landscape_dist.execution import RayPool

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # sockets on loopback
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    ray.init(address="local", num_cpus=actors, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    try:
        config = config_from_dict({**_settings(points, tile),
                                   "cluster": {"num_workers": actors, "cpus_per_worker": 1}})
        pool = RayPool(ModelSpec.from_source("parabola"), DataSpec("parabola"),
                       config.evaluation, config.cluster)
        try:
            result = run(config, pool, f"{actors} Ray actors")
            time.sleep(2.0)  # task events reach Ray's timeline about once a second
            result["workers"] = worker_seconds(ray.timeline())
        finally:
            pool.close()
    finally:
        ray.shutdown()
    return result


def worker_seconds(events: list) -> dict:
    """The actors' seconds in ``evaluate`` calls from Ray's timeline: running the model
    (``task:execute``), taking the arguments (``task:deserialize_arguments``) and storing the
    answer, each event matched to the method whose span holds it (same worker thread)."""
    spans = [e for e in events if e.get("ph") == "X" and e.get("name") == "evaluate"]
    inner = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and str(e.get("name", "")).startswith("task:"):
            inner[(e["pid"], e["tid"])].append(e)
    out = collections.Counter()
    for span in spans:
        lo, hi = span["ts"], span["ts"] + span["dur"]
        for e in inner[(span["pid"], span["tid"])]:
            if lo <= e["ts"] <= hi:
                out[e["name"][len("task:"):]] += e["dur"] / 1e6
    out["calls"] = len(spans)
    return dict(out)


def matmul_gflops() -> float:
    """The float32 matmul ceiling of this machine, as ``scripts/benchmark.py`` measures it."""
    from benchmark import matmul_ceiling

    return matmul_ceiling()


def print_table(rows: list[dict]) -> None:
    head = ["run", "grid", "tile", "tiles", "tiles/s", "points/s", "RSS 10% / 90%", "whole"]
    head += [f"{p} (µs/tile)" for p in PHASES] + ["rest of loop (µs/tile)",
                                                   "workers computing (share)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        per = {p: 1e6 * r["phases"].get(p, 0.0) / r["tiles"] for p in PHASES}
        rest = 1e6 * r["phases"]["loop"] / r["tiles"] - sum(per.values())
        workers = r.get("workers")
        share = (f"{workers['execute'] / (int(r['label'].split()[0]) * r['phases']['loop']):.0%} "
                 f"({1e6 * workers['execute'] / r['tiles']:,.0f} µs/tile; args "
                 f"{1e6 * workers.get('deserialize_arguments', 0) / r['tiles']:,.0f})"
                 if workers else "-")
        cells = [r["label"], f"{r['grid'][1]} x {r['grid'][0]}", f"{r['tile'][0]}x{r['tile'][1]}",
                 f"{r['tiles']:,}", f"{r['tiles_per_s']:,.0f}", f"{r['points_per_s']:,.0f}",
                 f"{r['rss_10']:,.0f} / {r['rss_90']:,.0f} MiB", f"{r['seconds']:.1f} s"]
        cells += [f"{per[p]:,.1f}" for p in PHASES] + [f"{max(rest, 0.0):,.1f}", share]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="1001,4001",
                        help="points per axis of each instant grid, comma-separated ('': none)")
    parser.add_argument("--tile", default="16,64", help="tile sides (points), comma-separated")
    parser.add_argument("--workers", type=int, default=1000, help="instant workers")
    parser.add_argument("--ray", type=int, default=0, help="also sweep on this many Ray actors")
    parser.add_argument("--ray-points", type=int, default=201, help="points per axis on Ray")
    parser.add_argument("--ray-tile", type=int, default=4, help="tile side (points) on Ray")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = [instant_run(int(n), int(t), args.workers)  # --points '': the Ray run alone
            for t in args.tile.split(",") for n in args.points.split(",") if n]
    if args.ray:
        rows.append(ray_run(args.ray, args.ray_points, args.ray_tile))
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2, default=float)
    print(f"\nOne driver process; float32 matmul on this machine in the same run: "
          f"{matmul_gflops():,.0f} GFLOP/s. The phases are the driver's own time inside the loop "
          f"(the surface file's also includes its last flush), the rest of the loop is the "
          f"scheduler's own bookkeeping; 'workers computing' is the Ray actors' time in the model "
          f"over their number times the loop's wall time.")


if __name__ == "__main__":
    main()
