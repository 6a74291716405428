"""Ends the local Ray a driver started once the driver is gone, however it ended, and removes
the temporary files of its workers.

Ray's own processes stop with a driver that exits, but some (its dashboard and runtime-env
agents) outlive a driver killed with SIGKILL, and a worker killed that way cannot remove its
temporary folder. :func:`start_reaper` starts this file as a small process in its own session; it
follows the driver's Ray processes (the driver's descendants whose command line is Ray's) and,
once the driver has gone, terminates those still running, then removes the folders it was given.
:func:`private_tmpdir` gives the processes a driver starts (a local Ray, its workers) a
temporary folder of their own, one such folder. Linux only (it reads ``/proc``); it imports
nothing of the package, so it starts in a blink.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

_POLL_S = 0.5
_GRACE_S = 2.0  # after the driver has gone: time for Ray's own shutdown before terminating


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _is_ray(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ")
    except OSError:
        return False
    return cmdline.startswith(b"ray::") or b"/ray/" in cmdline


def _descendants(root: int) -> dict[int, int]:
    """pid -> start time of every descendant of ``root``."""
    children: dict[int, list[int]] = {}
    starts = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                children.setdefault(info[0], []).append(int(name))
                starts[int(name)] = info[1]
    out, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid in starts and pid not in out:
            out[pid] = starts[pid]
            stack.extend(children.get(pid, []))
    return out


def _alive(pid: int, start: int) -> bool:
    info = _stat(pid)
    return info is not None and info[1] == start  # the same process, not a reused pid


def watch(driver: int, remove: tuple[str, ...] = ()) -> None:
    """Follow ``driver``'s Ray processes until it has gone, then end those still running and
    remove the folders ``remove``."""
    me = os.getpid()
    known: dict[int, int] = {}
    driver_start = (_stat(driver) or (0, 0))[1]
    while _alive(driver, driver_start):
        known.update({pid: start for pid, start in _descendants(driver).items()
                      if pid != me and _is_ray(pid)})
        time.sleep(_POLL_S)
    deadline = time.monotonic() + _GRACE_S
    while time.monotonic() < deadline and any(_alive(p, s) for p, s in known.items()):
        time.sleep(0.1)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [pid for pid, start in known.items() if _alive(pid, start)]
        for pid in left:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if left and sig == signal.SIGTERM:
            time.sleep(1.0)
    for path in remove:
        shutil.rmtree(path, ignore_errors=True)


_reapers: dict[int, subprocess.Popen] = {}  # driver pid -> its reaper, started from here


def start_reaper(driver: int | None = None,
                 remove: tuple[str, ...] = ()) -> subprocess.Popen | None:
    """Start the watcher of ``driver`` (default: this process) in its own session, which removes
    the folders ``remove`` once the driver has gone; None where there is no ``/proc``. Where a
    reaper of the driver runs already, a call with nothing to remove returns it."""
    driver = driver or os.getpid()
    running = _reapers.get(driver)
    if not remove and running is not None and running.poll() is None:
        return running
    if not os.path.isdir("/proc/self"):
        return None
    started = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(driver), *remove],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)
    _reapers.setdefault(driver, started)
    if _reapers[driver].poll() is not None:
        _reapers[driver] = started
    return started


@contextlib.contextmanager
def private_tmpdir():
    """Inside, the processes this one starts (a local Ray and its workers) keep their temporary
    files in a fresh folder (``TMPDIR``), which this process's reaper removes once it has gone,
    however it ended (a ``kill -9`` too); this process's own temporary folder and Ray's session
    folder stay where they were. Yields the folder; on leaving, it is removed at once unless a
    Ray started meanwhile may still use it."""
    base = tempfile.gettempdir()  # this process's own, fixed before TMPDIR changes
    path = tempfile.mkdtemp(prefix=f"landscape_dist-{os.getpid()}-", dir=base)
    saved = {name: os.environ.get(name) for name in ("TMPDIR", "RAY_TMPDIR")}
    os.environ.setdefault("RAY_TMPDIR", os.environ.get("TMPDIR", "/tmp"))  # where Ray would go
    os.environ["TMPDIR"] = path
    try:
        start_reaper(remove=(path,))
        yield path
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        ray = sys.modules.get("ray")
        if ray is None or not ray.is_initialized():
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]), tuple(sys.argv[2:]))
