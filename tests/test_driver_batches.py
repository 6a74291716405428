"""The driver's batches: the tiles that come in together are journalled in one record (one
fsync) before any is reported, and written into the surface file a chunk at a time by a
write-behind buffer that gives the same file as writing tile by tile."""

import importlib
import io

import h5py
import numpy as np
import pytest
from thread_backend import ThreadPool

import landscape_dist.store.journal as journal_module
from drills import AfterTiles, Interrupt
from landscape_dist.callbacks import ProgressBar, SweepCallback
from landscape_dist.cli.lines import estimate_lines
from landscape_dist.commands import sweep
from landscape_dist.config import config_from_dict
from landscape_dist.config.schema import ClusterConfig
from landscape_dist.core.grid import Tile, point_tiles, split_tiles
from landscape_dist.core.quantities import POINTS
from landscape_dist.execution import InProcessPool, Job, WorkerPool
from landscape_dist.execution.local import LocalBackend
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.store.blocks import BlockBuffer
from landscape_dist.store.journal import TileJournal
from landscape_dist.store.surface import read_surface

estimate_module = importlib.import_module("landscape_dist.commands.estimate")  # not the function
MODEL, DATA = ModelSpec.from_source("parabola"), DataSpec("parabola")


def _config(tile, x=12, y=8):
    return config_from_dict({
        "model": {"source": "parabola"}, "data": {"source": "parabola"},
        "grid": {"x": {"min": -1.0, "max": 1.0, "points": x},
                 "y": {"min": -0.5, "max": 1.5, "points": y}, "tile": list(tile)},
        "evaluation": {"tune": False},  # the default strategy: no timing of the others
        "slices": [{"name": "random", "directions": {"seed": 3}}]})


def _instant_pool(workers: int):
    """``workers`` in-process workers, each answering when sent: every round of the scheduler
    finds all ``2 * workers`` jobs in flight done, a batch of that many."""
    return WorkerPool(LocalBackend(MODEL, DATA, _config((2, 2)).evaluation, ("loss",)),
                      ClusterConfig(backend="local"), workers, 1)


def _every_point_at_once(surface) -> np.ndarray:
    """The slice's loss at every grid point from one job on one in-process worker, at the
    plane stored in the file: the reference, independent of tiles and batches."""
    pool = InProcessPool(MODEL, DATA, _config((2, 2)).evaluation)
    pool.set_plane(surface.centre, surface.directions, surface.non_trainable)
    xx, yy = np.meshgrid(surface.xcoordinates, surface.ycoordinates)
    got = {}
    pool.run([Job(0, POINTS, np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32))],
             got.__setitem__)
    return got[0]["loss"].reshape(xx.shape)


def test_a_group_of_tiles_is_one_record_read_back_whole_or_not_at_all(tmp_path, monkeypatch):
    syncs = []
    real_fsync = journal_module.os.fsync
    monkeypatch.setattr(journal_module.os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd)))
    path = tmp_path / "j"
    journal = TileJournal.open(path, {"a": 1}, resume=False)
    first = [(0, {"loss": np.arange(4.0), "acc": np.ones(4)}),
             (1, {"loss": np.arange(6.0) + 10, "acc": np.zeros(6)})]  # tiles of other sizes
    journal.append_tiles("s", first)
    size_after_first = path.stat().st_size
    second = [(k, {"loss": np.full(3, float(k)), "acc": np.full(3, 0.5)}) for k in (2, 3, 4)]
    journal.append_tiles("s", second)
    journal.close()
    assert len(syncs) == 3  # the fingerprint, then one per group
    _, records, good = TileJournal.read(path)
    assert [(r[0], r[1], r[2]) for r in records] == [("tile", "s", k) for k in range(5)]
    for (_, _, _, payload), (_, expected) in zip(records, first + second):
        assert set(payload) == {"loss", "acc"}
        for name, values in expected.items():
            np.testing.assert_array_equal(payload[name], values)
    for cut in (path.stat().st_size - 1, size_after_first + 30):  # the second group cut short
        journal_module.os.truncate(path, cut)
        _, records, good = TileJournal.read(path)
        assert [r[2] for r in records] == [0, 1] and good == size_after_first
    assert journal.resumed("tile", "s") == {}  # nothing read back into a journal just written


class _JournalWatch(SweepCallback):
    """At each reported tile, the tiles the journal holds by then."""

    def __init__(self, path):
        self.path, self.seen = path, []

    def on_tile_end(self, name, tile, result):
        held = {r[2] for r in TileJournal.read(self.path)[1] if r[0] == "tile"}
        assert tile.index in held  # never reported before it is on disk
        self.seen.append(len(held))


@pytest.mark.slow
def test_a_batch_is_journalled_whole_before_its_first_tile_is_reported(tmp_path, monkeypatch):
    writes = []
    real_write = TileJournal._write
    monkeypatch.setattr(TileJournal, "_write",
                        lambda self, record: (writes.append(len(record)), real_write(self, record)))
    config = _config((2, 2))  # 6 x 4 = 24 tiles; 3 workers, 2 jobs each: batches of 6
    watch = _JournalWatch(tmp_path / "surface.h5.journal")
    sweep(config, tmp_path, pool=_instant_pool(3), callbacks=[watch], progress=False)
    assert watch.seen == [6] * 6 + [12] * 6 + [18] * 6 + [24] * 6
    assert len(writes) == 1 + 4  # the plane, then one write (and fsync) per batch
    surface = read_surface(tmp_path / "surface.h5")["random"]
    assert surface.done.all()
    np.testing.assert_allclose(surface.values["loss"], _every_point_at_once(surface), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("tile", [(4, 4), (3, 5)])  # divides the 8 x 12 grid, and does not
def test_a_sweep_on_threads_gives_the_values_of_every_point_at_once(tmp_path, tile):
    pool = ThreadPool(MODEL, DATA, _config(tile).evaluation, ClusterConfig(num_workers=2))
    try:
        sweep(_config(tile), tmp_path, pool=pool, progress=False)
    finally:
        pool.close()
    surface = read_surface(tmp_path / "surface.h5")["random"]
    assert surface.done.shape == (8, 12) and surface.done.all()
    np.testing.assert_allclose(surface.values["loss"], _every_point_at_once(surface), rtol=1e-5)
    with h5py.File(tmp_path / "surface.h5") as f:  # Li et al.'s layout still links the values
        np.testing.assert_array_equal(f["train_loss"][...], surface.values["loss"])


@pytest.mark.slow
def test_the_buffer_is_written_into_the_file_when_the_sweep_is_interrupted(tmp_path):
    config = _config((2, 2), x=40, y=30)  # coarse to fine: no chunk is complete after 5 tiles
    with pytest.raises(Interrupt):
        sweep(config, tmp_path, pool=_instant_pool(1), callbacks=[AfterTiles(5)],
              progress=False)
    records = TileJournal.read(tmp_path / "surface.h5.journal")[1]
    tiles = {t.index: t for t in split_tiles((30, 40), (2, 2), "coarse_to_fine")}
    expected, done = np.full((30, 40), np.nan), np.zeros((30, 40), bool)
    for kind, _, key, payload in records:
        if kind == "tile":
            tiles[key].place(expected, payload["loss"])
            tiles[key].place(done, np.ones(tiles[key].size, bool))
    partial = read_surface(tmp_path / "surface.h5.partial", unfinished=True)["random"]
    assert len(records) >= 5 + 1 and done.sum() >= 5 * 4  # the plane, and every tile reported
    np.testing.assert_array_equal(partial.done, done)
    np.testing.assert_array_equal(partial.values["loss"], expected)


def _datasets(f, shape, chunks):
    return {"v": f.create_dataset("v", shape=shape, dtype="f8", fillvalue=np.nan, chunks=chunks),
            "done": f.create_dataset("done", shape=shape, dtype=bool, chunks=chunks)}


@pytest.mark.parametrize("order", ["coarse_to_fine", "rows"])
def test_the_buffer_gives_the_file_of_writing_tile_by_tile(tmp_path, order):
    rng = np.random.default_rng(0)
    shape, chunks = (37, 29), (8, 6)  # chunks that tiles of every stride cross
    tiles = split_tiles(shape, (3, 4), order)
    rows, cols = np.nonzero(rng.random(shape) < 0.3)
    listed = point_tiles(rows, cols, 7, len(tiles))  # points of no lattice, as refinement's
    taken = np.zeros(shape, bool)
    for t in listed:
        t.place(taken, np.ones(t.size, bool))
    expected, done = np.full(shape, np.nan), np.zeros(shape, bool)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        # a small memory bound: blocks are written out unfinished and read back when reached
        buffer = BlockBuffer(_datasets(f, shape, chunks), "done", limit_bytes=6 * 8 * 9 * 5)
        for t in tiles + listed:
            values = rng.standard_normal(t.size)
            if t in listed or not _meets(t, taken):
                buffer.add(t, {"v": values})
                t.place(expected, values)
                t.place(done, np.ones(t.size, bool))
            assert buffer.held_bytes <= 6 * 8 * 9 * 5
        buffer.flush()
        np.testing.assert_array_equal(f["v"][...], expected)
        np.testing.assert_array_equal(f["done"][...], done)
        assert buffer.writes < 2 * 2 * len(tiles)  # fewer than a write per tile and dataset


def _meets(tile: Tile, taken: np.ndarray) -> bool:
    """Whether a lattice tile has a point a listed tile took (each point is written once)."""
    mask = np.zeros(taken.shape, bool)
    tile.place(mask, np.ones(tile.size, bool))
    return bool((mask & taken).any())


def test_a_one_dimensional_slice_and_the_time_bound(tmp_path):
    now = [0.0]
    with h5py.File(tmp_path / "s.h5", "w") as f:
        buffer = BlockBuffer(_datasets(f, (50,), (16,)), "done", every_s=5.0,
                             clock=lambda: now[0])
        first, second = Tile(0, 0, 1, 0, 10), Tile(1, 0, 1, 10, 20)
        buffer.add(first, {"v": np.arange(10.0)})
        assert not f["done"][...].any()  # held: its chunk is not complete
        now[0] = 5.0
        buffer.add(second, {"v": np.arange(10.0) + 10})  # completes chunk 0, and time is up
        np.testing.assert_array_equal(f["v"][:20], np.arange(20.0))
        np.testing.assert_array_equal(f["done"][...], np.arange(50) < 20)


def test_the_tile_rule_gives_about_a_second_of_a_worker_per_tile():
    assert estimate_module.tile_for_rate(400.0, (1001, 1001)) == (20, 20)
    assert estimate_module.tile_for_rate(30_000.0, (1001, 1001)) == (173, 173)
    assert estimate_module.tile_for_rate(30_000.0, (51, 2001)) == (51, 588)  # as square as fits
    assert estimate_module.tile_for_rate(1e9, (51, 51)) == (51, 51)  # never above the grid
    assert estimate_module.tile_for_rate(300.0, (1, 101)) == (1, 101)  # 1-D: a run of columns
    assert estimate_module.tile_for_rate(0.2, (11, 11)) == (1, 1)
    rule = estimate_module.tile_rule(256, 400.0, 8, (1001, 1001))
    assert rule["tile_s"] == 0.64 and rule["driver_tiles_per_s"] == 8 / 0.64
    assert rule["rule_tile"] == [20, 20] and rule["rule_driver_tiles_per_s"] == 8.0


def test_the_dry_run_reports_the_tile_rule(monkeypatch):
    probe = {"probe_points": 16, "points_per_s": 2_500.0, "compile_s": 0.0,
             "flop_per_point": 1e6, "examples": 256, "strategy": None}
    monkeypatch.setattr(estimate_module, "_probe", lambda *args, **kwargs: probe)
    config = _config((16, 16), x=501, y=401)
    result = estimate_module.estimate(config, in_process=True)
    s = result["slices"]["random"]
    assert s["points_per_tile"] == 256 and s["tile_s"] == pytest.approx(256 / 2500)
    assert s["driver_tiles_per_s"] == pytest.approx(2500 / 256)
    assert s["rule_tile"] == [50, 50] and s["rule_tile_s"] == pytest.approx(1.0)
    line = estimate_lines(result)[1]
    assert line.endswith("; tiles of 256 points take a worker 0.102 s each, so the driver takes "
                         "9.77 tiles/s from 1 worker; the tile rule (about 1 s of a worker per "
                         "tile) gives grid.tile [50, 50] (2,500 points, 1 tiles/s)")


def test_the_progress_bar_draws_at_most_ten_times_a_second():
    now = [0.0]
    bar = ProgressBar(file=io.StringIO(), per_second=10, clock=lambda: now[0])
    bar.on_slice_begin("s", 1000)
    tile = Tile(0, 0, 2, 0, 5)
    for _ in range(30):  # 30 tiles in no time: nothing drawn yet
        bar.on_tile_end("s", tile, {})
    assert bar._bar.n == 0
    now[0] = 0.1
    bar.on_tile_end("s", tile, {})
    assert bar._bar.n == 310
    shown = bar._bar
    bar.on_tile_end("s", tile, {})
    bar.on_slice_end("s", {})
    assert shown.n == 320  # every point counted when the slice ends


def test_the_driver_memory_check_counts_the_write_behind_buffer(tmp_path, capsys, monkeypatch):
    import yaml

    import landscape_dist.store.preflight as preflight
    from landscape_dist.cli import main

    # what a tile of a coarse pass opens: every point in a block of its own (256 x 256 points,
    # 9 bytes a point at least), on top of the buffer's limit; never more than the whole grid
    stride = preflight.coarsest_stride((65536, 65536))
    assert stride == 4096 and 15 * stride // 256 + 2 > 16
    assert preflight.buffer_bytes((65536, 65536), (16, 16), "coarse_to_fine") == (
        (256 * 2 ** 20 // 9 + 16 * 16 * 256 * 256) * 9)
    assert preflight.buffer_bytes((65536, 65536), (16, 16), "rows") == (
        (256 * 2 ** 20 // 9 + 2 * 2 * 256 * 256) * 9)  # a tile meets at most 2 x 2 blocks
    assert preflight.buffer_bytes((4096, 4096), (16, 16), "rows") == 4096 * 4096 * 9
    assert preflight.buffer_bytes((1, 10 ** 6), (1, 100), "rows", flat=True) == 9 * 10 ** 6
    # 65,536 tiles' bookkeeping (32 MiB) fits in half of 256 MiB; with the buffer it does not
    monkeypatch.setattr(preflight, "_available_memory", lambda: 256 * 2 ** 20)
    settings = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
                "grid": {"x": {"min": -1.0, "max": 1.0, "points": 4096},
                         "y": {"min": -1.0, "max": 1.0, "points": 4096}, "tile": [16, 16]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(settings))
    code = main(["sweep", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "--dry-run",
                 "--in-process", "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "landscape-dist: error: The grid of slice 'random' (4096 x 4096 points in tiles of 16 x "
        "16) needs at least 0.172 GiB of the driver's memory (its 6.55e+04 tiles' bookkeeping "
        "and up to 0.141 GiB of finished tiles held before they are written), more than half "
        "the 0.25 GiB available. Use smaller tiles (grid.tile), fewer points (grid.x.points, "
        "grid.y.points), or a machine with more free memory."]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_sweep_killed_before_its_buffer_reached_the_file_resumes_every_journalled_tile(
        tmp_path, monkeypatch):
    config = _config((2, 2), x=40, y=30)
    # as kill -9 after 7 tiles: journalled, but nothing the buffer held reached the file
    monkeypatch.setattr(BlockBuffer, "_write", lambda self, key, block: None)
    with pytest.raises(Interrupt):
        sweep(config, tmp_path / "cut", pool=_instant_pool(1), callbacks=[AfterTiles(7)],
              progress=False)
    monkeypatch.undo()
    partial = read_surface(tmp_path / "cut" / "surface.h5.partial", unfinished=True)["random"]
    assert not partial.done.any()  # the file has none of them: only the journal does
    records = TileJournal.read(tmp_path / "cut" / "surface.h5.journal")[1]
    journalled = {key for kind, _, key, _ in records if kind == "tile"}
    assert len(journalled) >= 7
    summary = sweep(config, tmp_path / "cut", pool=_instant_pool(1), progress=False)
    assert summary["slices"]["random"]["tiles_resumed"] == len(journalled)
    sweep(config, tmp_path / "whole", pool=_instant_pool(1), progress=False)
    resumed = read_surface(tmp_path / "cut" / "surface.h5")["random"]
    whole = read_surface(tmp_path / "whole" / "surface.h5")["random"]
    assert resumed.done.all()
    np.testing.assert_array_equal(resumed.values["loss"], whole.values["loss"])


@pytest.mark.parametrize("per_second", [0, -1.0, float("nan"), float("inf"), "10", True])
def test_a_progress_bar_without_a_positive_rate_is_refused(per_second):
    with pytest.raises(ValueError) as err:
        ProgressBar(per_second=per_second)
    assert str(err.value) == ("The 'per_second' parameter of ProgressBar must be a finite number "
                              f"> 0 (redraws a second). Got {per_second!r} instead.")
