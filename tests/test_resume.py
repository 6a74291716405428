"""A killed driver: the journal survives any cut, a rerun computes only the missing tiles."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from drills import AfterTiles, Interrupt
from landscape_dist.config import config_from_dict
from landscape_dist.execution import InProcessPool
from landscape_dist.cli import FLAGS, main
from landscape_dist.store.journal import TileJournal
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface

SETTINGS = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
            "grid": {"x": {"min": -1.0, "max": 1.0, "points": 9},
                     "y": {"min": -1.0, "max": 1.0, "points": 6}, "tile": [2, 3]},
            "slices": [{"name": "random", "directions": {"seed": 4}}]}


def _with(**changes):
    data = yaml.safe_load(yaml.safe_dump(SETTINGS))
    for dotted, value in changes.items():
        node = data
        *head, last = dotted.split("__")
        for key in head:
            node = node[key]
        node[last] = value
    return config_from_dict(data)


def _pool():
    return InProcessPool(ModelSpec.from_source("parabola"), DataSpec("parabola"),
                         config_from_dict(SETTINGS).evaluation)


def _assert_equals_uninterrupted(config, resumed_file, whole_dir):
    """The resumed surface equals an uninterrupted in-process sweep of the same config."""
    resumed = read_surface(resumed_file)["random"]
    sweep(config, whole_dir, pool=_pool(), progress=False)
    whole = read_surface(whole_dir / "surface.h5")["random"]
    assert resumed.done.all() and set(resumed.values) == set(whole.values) == {"loss"}
    for name, values in whole.values.items():
        np.testing.assert_allclose(resumed.values[name], values, rtol=1e-6)


def test_journal_reads_back_every_whole_record_after_a_cut(tmp_path):
    path = tmp_path / "j"
    journal = TileJournal.open(path, {"a": 1}, resume=False)
    for i in range(3):
        journal.append("tile", "s", i, {"loss": np.full(4, float(i))})
    journal.close()
    whole = path.stat().st_size
    for cut in (whole - 1, whole - 40, whole - 200):  # a record cut short anywhere
        os.truncate(path, cut)
        fingerprint, records, good = TileJournal.read(path)
        assert fingerprint == {"a": 1} and [r[2] for r in records] == [0, 1] and good <= cut
        journal = TileJournal.open(path, {"a": 1}, resume=True)
        journal.append("tile", "s", 2, {"loss": np.full(4, 2.0)})  # follows the last whole record
        journal.close()
        _, records, good = TileJournal.read(path)
        assert [r[2] for r in records] == [0, 1, 2] and good == path.stat().st_size
        np.testing.assert_array_equal(records[2][3]["loss"], np.full(4, 2.0))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a flipped byte fails the checksum: that record and what follows are dropped
    path.write_bytes(bytes(data))
    assert [r[2] for r in TileJournal.read(path)[1]] == [0, 1]


def test_interrupted_sweep_resumes_and_refuses_another_configuration(tmp_path):
    config = _with()
    with pytest.raises(Interrupt):
        sweep(config, tmp_path, pool=_pool(), progress=False, callbacks=[AfterTiles(3)])
    assert not (tmp_path / "surface.h5").exists()
    journal = tmp_path / "surface.h5.journal"
    before = journal.read_bytes()
    with pytest.raises(ValueError) as err:
        sweep(_with(grid__x__points=11), tmp_path, pool=_pool(), progress=False)
    assert str(err.value) == (
        f"The unfinished sweep in '{tmp_path}' was started with another configuration "
        "(slices.0.grid.x.points: 9 -> 11). Rerun with the same settings to resume it, pass "
        "overwrite=True to start again, or give another output directory.")
    assert str(err.value.reworded(FLAGS)) == (  # as the command line says it
        f"The unfinished sweep in '{tmp_path}' was started with another configuration "
        "(slices.0.grid.x.points: 9 -> 11). Rerun with the same settings to resume it, pass "
        "--overwrite to start again, or give another --out.")
    with pytest.raises(ValueError, match=r"slices.0.directions.seed: 4 -> 5"):
        sweep(_with(slices=[{"name": "random", "directions": {"seed": 5}}]), tmp_path, pool=_pool(),
              progress=False)
    with pytest.raises(ValueError, match=r"model.source: 'parabola' -> 'digits'"):
        sweep(_with(model={"source": "digits"}, data={"source": "digits"}), tmp_path, pool=_pool(),
              progress=False)
    assert journal.read_bytes() == before  # refusals write nothing

    summary = sweep(config, tmp_path, pool=_pool(), progress=False)
    info = summary["slices"]["random"]
    assert (info["tiles_resumed"], info["tiles_computed"], info["tiles"]) == (3, 6, 9)
    assert not journal.exists()
    _assert_equals_uninterrupted(config, tmp_path / "surface.h5", tmp_path / "whole")


def test_overwrite_starts_again(tmp_path):
    with pytest.raises(Interrupt):
        sweep(_with(), tmp_path, pool=_pool(), progress=False, callbacks=[AfterTiles(2)])
    summary = sweep(_with(grid__x__points=11), tmp_path, pool=_pool(), progress=False,
                    overwrite=True)
    assert summary["slices"]["random"]["tiles_resumed"] == 0
    assert read_surface(tmp_path / "surface.h5")["random"].values["loss"].shape == (6, 11)


# The command line in a child process, its progress bar replaced by a callback that writes each
# tile it is told is finished to a side file (flushed and synced before the sweep goes on): what
# the driver had reported done when it was killed, counted apart from the journal.
_REPORTING_CLI = """
import os, sys
import landscape_dist.commands
from landscape_dist.callbacks import SweepCallback
from landscape_dist.cli import main

class Reported(SweepCallback):
    def __init__(self):
        self.file = open(os.environ["LANDSCAPE_DIST_REPORTED"], "a")

    def on_tile_end(self, name, tile, result):
        self.file.write(f"{tile.index}\\n")
        self.file.flush()
        os.fsync(self.file.fileno())

sys.modules["landscape_dist.commands.sweep"].ProgressBar = Reported
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_cli_killed_with_sigkill_keeps_every_tile_it_reported_done(tmp_path, capsys):
    settings = yaml.safe_load(yaml.safe_dump(SETTINGS))
    settings["grid"] = {"x": {"min": -1.0, "max": 1.0, "points": 30},
                        "y": {"min": -1.0, "max": 1.0, "points": 20}, "tile": [1, 1]}
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    out, reported = tmp_path / "out", tmp_path / "reported.txt"
    arguments = ["sweep", str(cfg), "--out", str(out), "--in-process"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "LANDSCAPE_DIST_REPORTED": str(reported)}
    proc = subprocess.Popen([sys.executable, "-c", _REPORTING_CLI, *arguments], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if reported.exists() and reported.read_text().count("\n") >= 60:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the sweep ended before it could be killed: {err}"
    assert not (out / "surface.h5").exists()
    told = [int(line) for line in reported.read_text().splitlines()]
    journalled = {r[2] for r in TileJournal.read(out / "surface.h5.journal")[1] if r[0] == "tile"}
    assert len(told) >= 60 and len(set(told)) == len(told)
    assert set(told) - journalled == set()  # every tile reported done survived the kill
    assert len(journalled - set(told)) <= 1  # besides them, at most the one in flight
    done_before = len(journalled)

    capsys.readouterr()
    code = main([*arguments, "--no-progress"])  # the rerun: the command line in this process
    err = capsys.readouterr().err
    assert code == 0, err
    assert (f"slice 'random': {done_before} of 600 tiles already done (resumed from "
            f"surface.h5.journal); computing {600 - done_before}") in err
    _assert_equals_uninterrupted(config_from_dict(settings), out / "surface.h5", tmp_path / "whole")


@pytest.mark.slow
def test_interrupted_run_resumes_without_training_again(tmp_path):
    from landscape_dist.commands import run, train

    settings = yaml.safe_load(yaml.safe_dump(SETTINGS))
    settings["train"] = {"epochs": 2, "batch_size": 64, "record_every": 1, "record_unit": "epoch"}
    settings["slices"].append({"name": "pca", "directions": {"kind": "pca"}})
    config = config_from_dict(settings)
    train(config, tmp_path)
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    trained = (tmp_path / "model.keras").read_bytes()
    with pytest.raises(Interrupt):
        sweep(config, tmp_path, in_process=True, progress=False, callbacks=[AfterTiles(4)])
    summary = run(config, tmp_path, in_process=True, progress=False)
    assert summary["train"] == {"resumed": True}
    assert (tmp_path / "model.keras").read_bytes() == trained  # the model the sweep began with
    assert summary["sweep"]["slices"]["random"]["tiles_resumed"] == 4
    other = tmp_path / "other"
    other.mkdir()
    for name, data in written.items():  # the same training's files: trained once, for both
        (other / name).write_bytes(data)
    with pytest.raises(Interrupt):
        sweep(config, other, in_process=True, progress=False, callbacks=[AfterTiles(1)])
    settings["train"]["epochs"] = 3
    with pytest.raises(ValueError, match=r"\(train.epochs: 2 -> 3\)"):  # other training: refused
        sweep(config_from_dict(settings), other, in_process=True, progress=False)
