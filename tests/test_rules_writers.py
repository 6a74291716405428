"""One writer per output directory, and every ending leaves a resumable journal and nothing else.

A command takes ``OUT/.landscape-dist.lock`` before it touches ``OUT``; a second one refuses in
one line naming the holder, exit 2, nothing touched. SIGTERM ends a command as Ctrl-C does (exit
143); after any ending, even ``kill -9``, no Ray process or worker temporary folder is left.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from landscape_dist.cli import main
from landscape_dist.config import config_from_dict
from landscape_dist.store.journal import TileJournal
from landscape_dist.store.lock import LOCK_NAME, holding
from landscape_dist.store.surface import read_surface

BASE = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
        "train": {"epochs": 1, "record_every": 1, "record_unit": "epoch"},
        "grid": {"x": {"points": 4}, "y": {"points": 3}, "tile": [3, 4]},
        "slices": [{"name": "random"}]}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
CLI = [sys.executable, "-m", "landscape_dist.cli"]


def _tree(path: Path):
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


def _config(tmp_path: Path, settings: dict) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    return cfg


def _wait_for_tiles(proc, journal: Path, count: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if journal.exists() and len(TileJournal.read(journal)[1]) >= count:
                return
        except FileNotFoundError:
            break
        time.sleep(0.05)
    raise AssertionError("the sweep ended before the test could act on it")


def _refusal(out: Path, holder: dict) -> str:
    return (f"landscape-dist: error: The output directory '{out}' is in use by a landscape-dist "
            f"{holder['command']} (process {holder['pid']} on host {holder['host']}, started "
            f"{holder['started']}). Wait until it ends or give another --out; if that process has "
            f"gone, remove '{out / LOCK_NAME}'.")


def _kept(out: Path) -> int:
    return sum(r[0] == "tile" for r in TileJournal.read(out / "surface.h5.journal")[1])


# ------------------------------------------------------------------ one writer per directory

@pytest.mark.slow
def test_a_second_sweep_into_the_same_directory_is_refused_while_the_first_finishes(tmp_path,
                                                                                     capsys):
    from landscape_dist.model.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()  # the second command, run in this process, refuses at once
    settings = {**BASE, "grid": {"x": {"points": 40}, "y": {"points": 30}, "tile": [1, 1]}}
    cfg, out = _config(tmp_path, settings), tmp_path / "out"
    args = ["sweep", str(cfg), "--out", str(out), "--in-process", "--no-progress"]
    first = subprocess.Popen(CLI + args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    _wait_for_tiles(first, out / "surface.h5.journal", 5)
    holder = json.loads((out / LOCK_NAME).read_text())
    names = sorted(os.listdir(out))
    capsys.readouterr()
    second = main(args)  # another process than the holder: this one
    assert first.poll() is None, "the first sweep ended before the second one was refused"
    assert second == 2
    assert capsys.readouterr().err.strip().splitlines() == [_refusal(out, holder)]
    assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
    assert sorted(os.listdir(out)) == names  # the second created nothing
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    surface = read_surface(out / "surface.h5")["random"]
    assert surface.done.all() and np.isfinite(surface.values["loss"]).all()
    assert sorted(os.listdir(out)) == ["surface.h5"]  # the lock was given back


@pytest.mark.parametrize("command", ["train", "sweep", "run", "curvature", "plot"])
def test_a_directory_held_on_another_host_is_refused_before_anything_is_touched(
        tmp_path, capsys, command):
    cfg, out = _config(tmp_path, BASE), tmp_path / "out"
    out.mkdir()
    (out / "model.keras").write_bytes(b"made earlier")
    holder = {"host": "node-elsewhere-7", "pid": os.getpid(), "ticks": 1, "command": "sweep",
              "started": "2026-12-01 10:00:00 UTC", "token": "0" * 32}
    (out / LOCK_NAME).write_text(json.dumps(holder))
    before = _tree(tmp_path)
    if command == "plot":
        argv = ["plot", str(out / "surface.h5")]
    else:
        argv = [command, str(cfg), "--out", str(out)] + (
            ["--in-process"] if command != "train" else []) + (
            ["--no-progress"] if command in ("sweep", "run") else [])
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [_refusal(out, holder)]
    assert _tree(tmp_path) == before


def test_a_stale_lock_of_a_process_gone_from_this_host_is_taken_over(tmp_path, caplog):
    from landscape_dist.commands import sweep

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    out = tmp_path / "out"
    out.mkdir()
    stale = {"host": socket.gethostname(), "pid": gone.pid, "ticks": 1, "command": "sweep",
             "started": "2026-12-01 10:00:00 UTC", "token": "1" * 32}
    (out / LOCK_NAME).write_text(json.dumps(stale))
    with caplog.at_level("WARNING", logger="landscape_dist"):
        sweep(config_from_dict(BASE), out, in_process=True, progress=False)
    assert [r.getMessage() for r in caplog.records if "taking it over" in r.getMessage()] == [
        f"the output directory '{out}' was held by a landscape-dist sweep (process {gone.pid} on "
        f"host {stale['host']}, started {stale['started']}), which has ended; taking it over"]
    assert read_surface(out / "surface.h5")["random"].done.all()
    assert not (out / LOCK_NAME).exists()


def test_a_live_process_of_this_host_keeps_its_lock(tmp_path):
    from landscape_dist.errors import OutputError
    from landscape_dist.store.lock import DirectoryLock

    out = tmp_path / "out"
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = DirectoryLock(out, "train")
        holder._me["pid"], holder._me["ticks"] = parent.pid, None  # as the other process wrote it
        holder.acquire()
        with pytest.raises(OutputError) as err:
            DirectoryLock(out, "sweep").acquire()
        assert str(err.value).startswith(f"The output directory '{out}' is in use by a "
                                         f"landscape-dist train (process {parent.pid} on host ")
    finally:
        parent.kill()
        parent.wait()
    DirectoryLock(out, "sweep").acquire().release()  # gone now: taken over, then given back
    assert os.listdir(out) == []


def test_the_lock_is_taken_once_within_a_process_and_given_back_on_every_ending(tmp_path):
    out = tmp_path / "a" / "out"
    with holding(out, "run"):
        with holding(out, "sweep"):  # run calls sweep: the same holder
            assert json.loads((out / LOCK_NAME).read_text())["command"] == "run"
        assert (out / LOCK_NAME).exists()
    assert not (tmp_path / "a").exists()  # made for the lock, empty: removed again
    with pytest.raises(KeyboardInterrupt):
        with holding(out, "sweep"):
            (out / "partial").write_text("x")
            raise KeyboardInterrupt
    assert sorted(os.listdir(out)) == ["partial"]


# ------------------------------------------------------------------ endings

@pytest.mark.slow
def test_sigterm_ends_a_sweep_as_ctrl_c_does_and_the_rerun_gives_the_same_values(tmp_path):
    from landscape_dist.commands import sweep

    settings = {**BASE, "grid": {"x": {"points": 20}, "y": {"points": 20}, "tile": [1, 1]}}
    cfg, out = _config(tmp_path, settings), tmp_path / "out"
    args = CLI + ["sweep", str(cfg), "--out", str(out), "--in-process", "--no-progress"]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_tiles(proc, out / "surface.h5.journal", 20)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert err.strip().splitlines() == [
        f"landscape-dist: terminated; {_kept(out)} of 400 tiles are kept in "
        f"{out / 'surface.h5.journal'}. Run the same command again to resume."]
    assert sorted(os.listdir(out)) == ["surface.h5.journal", "surface.h5.partial"]
    kept_before = _kept(out)
    summary = sweep(config_from_dict(settings), out, in_process=True, progress=False)  # resumes
    assert summary["slices"]["random"]["tiles_resumed"] == kept_before
    whole = tmp_path / "whole"
    sweep(config_from_dict(settings), whole, in_process=True, progress=False)
    resumed = read_surface(out / "surface.h5")["random"]
    uninterrupted = read_surface(whole / "surface.h5")["random"]
    assert resumed.done.all()
    np.testing.assert_array_equal(resumed.values["loss"], uninterrupted.values["loss"])


def _ray_processes_of(pid: int) -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if fields[0] != "Z" and f"landscape_dist-{pid}-".encode() in environ:
            found.add(int(name))  # started with this driver's TMPDIR: Ray's processes, workers
    return found


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
# with the Ray tests, one at a time: on a loaded machine (its actor took 78 s to start beside two
# busy processes) a terminated sweep once ended with status 1 and nothing said (not understood)
@pytest.mark.xdist_group("ray")
def test_no_ray_process_or_worker_folder_outlives_a_terminated_or_killed_sweep(tmp_path):
    settings = {**BASE, "grid": {"x": {"points": 60}, "y": {"points": 60}, "tile": [1, 1]},
                "cluster": {"num_workers": 1}}
    cfg, out = _config(tmp_path, settings), tmp_path / "out"
    args = CLI + ["sweep", str(cfg), "--out", str(out), "--no-progress"]
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    for ending in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        _wait_for_tiles(proc, out / "surface.h5.journal", _kept(out) + 10 if ending ==
                        signal.SIGKILL else 10)
        started = _ray_processes_of(proc.pid)
        folders = list(tmp.glob(f"landscape_dist-{proc.pid}-*/landscape_dist-worker-*"))
        assert started and folders  # Ray's processes and the worker's folder, in the private one
        proc.send_signal(ending)
        _, err = proc.communicate(timeout=120)
        if ending == signal.SIGTERM:
            assert proc.returncode == 143, err[-3000:]
            assert err.strip().splitlines() == [  # one line: no native stack from Ray
                f"landscape-dist: terminated; {_kept(out)} of 3600 tiles are kept in "
                f"{out / 'surface.h5.journal'}. Run the same command again to resume."]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (_ray_processes_of(proc.pid)
                                               or list(tmp.glob(f"landscape_dist-{proc.pid}-*"))):
            time.sleep(0.25)
        assert not _ray_processes_of(proc.pid)
        assert not list(tmp.glob(f"landscape_dist-{proc.pid}-*"))
