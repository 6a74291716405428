"""One writer per output directory: a command takes ``OUT/.landscape-dist.lock`` before it touches
anything in ``OUT``, and gives it back however it ends.

The lock file is made whole under a private name and then linked to its place, which fails where
the place is taken: atomic on a local and on a shared (NFS) file system alike, and never seen half
written. It names its holder (host, process id and start, command, time). A lock whose holder ran
on this host and has gone (a ``kill -9``, a crash) is stale and taken over, with a log line; a
lock of another host cannot be judged from here and is refused like a live one. Within one
process the lock is re-entrant: ``run`` takes it once for the train, sweep, curvature and plot it
calls.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from ..errors import OutputError
from .outdir import MADE_FOR_LOCK, OUT, check_writable

LOCK_NAME = ".landscape-dist.lock"

log = logging.getLogger("landscape_dist")

_held: dict[str, "DirectoryLock"] = {}  # real path of a directory -> its lock held here
_held_guard = threading.Lock()


def _start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (tells a reused pid from the
    holder), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])  # a zombie has ended
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, ticks: int | None) -> bool:
    """Whether the process ``pid`` that started at ``ticks`` still runs on this host."""
    if os.path.isdir("/proc/self"):
        now = _start_ticks(pid)
        return now is not None and (ticks is None or now == ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder_words(holder: dict) -> str:
    """``a landscape-dist sweep (process 123 on host node7, started 2026-12-01 10:00:00)``."""
    if not holder:
        return "an unknown process (its lock file cannot be read)"
    return (f"a landscape-dist {holder.get('command', 'command')} (process "
            f"{holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
            f"{holder.get('started', '?')})")


class DirectoryLock:
    """The lock of one output directory, for one command of this process."""

    def __init__(self, out: str | Path, command: str):
        self.out = Path(out)
        self.command = command
        self.path = self.out / LOCK_NAME
        self.depth = 0
        self._created: list[Path] = []  # directories made for the lock, removed again if empty
        self._me = {"host": socket.gethostname(), "pid": os.getpid(),
                    "ticks": _start_ticks(os.getpid()), "command": command,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "token": uuid.uuid4().hex}

    # ------------------------------------------------------------------ taking and giving back

    def acquire(self) -> "DirectoryLock":
        """Take the directory (creating it, and its parents, where missing); returns self.
        Raises :class:`OutputError` naming the holder where another process has it."""
        self._make_directory()
        try:
            for _ in range(5):  # a stale lock taken over, or a holder that let go meanwhile
                if self._link():
                    return self
                holder = self.read()
                if holder is None and self.path.exists():  # not a lock this package wrote
                    raise self._refusal({})
                if holder is not None and not self._stale(holder):
                    raise self._refusal(holder)
                if holder is not None:
                    self._take_over(holder)
            raise self._refusal(self.read() or {})
        except BaseException:
            self._remove_created()
            raise

    def release(self) -> None:
        """Give the directory back: remove the lock file if it is still ours, and the directories
        made for it if they are empty."""
        if self._held_by_me():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self._remove_created()

    def read(self) -> dict | None:
        """The holder the lock file names, or None where there is none (or it is unreadable)."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    # ------------------------------------------------------------------ the steps

    def _make_directory(self) -> None:
        missing = []
        path = self.out
        while not path.exists() and path != path.parent:
            missing.append(path)
            path = path.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except FileExistsError:
                continue
            self._created.append(path)
            MADE_FOR_LOCK.add(path.absolute())

    def _remove_created(self) -> None:
        for path in reversed(self._created):
            try:
                path.rmdir()
            except OSError:
                break  # not empty: the command wrote into it
        for path in self._created:
            MADE_FOR_LOCK.discard(path.absolute())
        self._created = []

    def _link(self) -> bool:
        """Put a whole lock file in place unless one is there; whether it was put."""
        private = self.out / f"{LOCK_NAME}.{self._me['host']}.{os.getpid()}.{self._me['token'][:8]}"
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self._me, f)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(private, self.path)  # atomic, and fails where the place is taken (NFS too)
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links: exclusive creation instead
                return self._create_exclusive()
            return True
        finally:
            try:
                private.unlink()
            except FileNotFoundError:
                pass

    def _create_exclusive(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self._me, f)
        return True

    def _held_by_me(self) -> bool:
        holder = self.read()
        return holder is not None and holder.get("token") == self._me["token"]

    def _stale(self, holder: dict) -> bool:
        """Whether the holder ran on this host and has gone."""
        if holder.get("host") != self._me["host"] or not isinstance(holder.get("pid"), int):
            return False
        return not _alive(holder["pid"], holder.get("ticks"))

    def _take_over(self, stale: dict) -> None:
        """Move a stale lock aside; one of several processes taking over at once does it (the
        move is atomic), the others find the lock gone or taken again."""
        aside = self.out / f"{LOCK_NAME}.stale.{self._me['token'][:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = None
        if moved != stale:  # a live lock taken meanwhile: put it back where it was
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        else:
            log.warning("the output directory '%s' was held by %s, which has ended; taking it "
                        "over", self.out, _holder_words(stale))
        aside.unlink()

    def _refusal(self, holder: dict) -> OutputError:
        return OutputError(f"The output directory '{self.out}' is in use by "
                           f"{_holder_words(holder)}. Wait until it ends or give another {{out}}; "
                           f"if that process has gone, remove '{self.path}'.", OUT)


class holding:  # noqa: N801 - used as a context manager, like contextlib's
    """Hold the output directory ``out`` for ``command`` inside (re-entrant within a process;
    the directory is checked as :func:`~landscape_dist.store.outdir.check_writable` checks it
    first)."""

    def __init__(self, out: str | Path, command: str):
        self.out = Path(out)
        self.command = command
        self.lock = None

    def __enter__(self) -> DirectoryLock:
        check_writable(self.out, create=False)
        key = os.path.realpath(self.out)
        with _held_guard:
            lock = _held.get(key)
            if lock is None or lock._me["pid"] != os.getpid():  # a forked child holds nothing
                lock = DirectoryLock(self.out, self.command).acquire()
                _held[key] = lock
            lock.depth += 1
        self.lock, self.key = lock, key
        return lock

    def __exit__(self, kind, err, tb) -> bool:
        with _held_guard:
            self.lock.depth -= 1
            if self.lock.depth == 0:
                _held.pop(self.key, None)
                self.lock.release()
        return False


def writes_into(command: str, where=None):
    """Decorate a command that writes into a directory: it runs holding that directory (see
    :class:`holding`). ``where(arguments)`` gives the directory from the call's arguments by name
    (default: the ``out`` argument)."""
    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            out = where(bound.arguments) if where is not None else bound.arguments["out"]
            with holding(out, command):
                return function(*args, **kwargs)
        return wrapper
    return decorate
