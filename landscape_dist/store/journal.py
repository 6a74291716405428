"""The resume journal: an append-only file of finished tiles kept next to an unfinished surface.

A sweep appends the tiles that arrived together as one record (a group commit: one write, one
fsync) before it reports any of them done; read back, each is a ``tile`` record of its own, as
the records of one tile each that earlier versions wrote still are.
A record is ``magic, payload length, CRC32, payload``; a last record cut short by a kill (or a
crash) ends the readable part, so a driver killed at any moment, even in the middle of a write,
loses at most the tiles in flight; damage anywhere else (a record failing its checksum with
others after it, bytes that are no record) is refused, naming the file as damaged. The first
record holds the run's fingerprint (what the grid depends on); rerunning the same command reads
the journal back, refuses it if the fingerprint differs, and computes only the tiles it lacks.
The journal is deleted once the surface file is complete.
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import OutputError

_MAGIC = b"LDJ1"
_START_AGAIN = "Pass {overwrite} to start the sweep again, or give another {out}."
_WORDS = {"overwrite": "overwrite=True", "out": "output directory"}
_HEAD = struct.Struct("<4sQI")  # magic, payload length, CRC32 of the payload
log = logging.getLogger(__name__)


def _flatten(value, prefix=""):
    """Nested dicts and lists as {'a.b.0.c': leaf}."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: value}


def _damaged(path: Path, reason: str) -> OutputError:
    return OutputError(f"The file '{path}' is damaged ({reason}). {_START_AGAIN}", _WORDS)


def _problem(data: bytes, pos: int) -> str:
    """What is wrong with the record at ``pos``: '' (nothing), 'cut' (an interrupted last
    write: short, all zeros, or the last record failing its checksum), else why it is damaged."""
    if pos + _HEAD.size > len(data) or not data[pos:].strip(b"\0"):
        return "cut"
    magic, length, crc = _HEAD.unpack_from(data, pos)
    end = pos + _HEAD.size + length
    if magic != _MAGIC:
        return f"no record starts at byte {pos}"
    if end > len(data):  # cut short, unless whole records follow (then its length is wrong)
        return "cut" if data.find(_MAGIC, pos + _HEAD.size) < 0 else (
            f"the record at byte {pos} runs past the end of the file")
    if zlib.crc32(data[pos + _HEAD.size:end]) != crc:
        return "cut" if end == len(data) else f"the record at byte {pos} fails its checksum"
    return ""


def differences(old: dict, new: dict, limit: int = 4) -> list[str]:
    """Human-readable differences between two fingerprints, e.g. ``grid.x.points: 11 -> 21``."""
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            out.append(f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}")
    if len(out) > limit:
        out = out[:limit] + [f"and {len(out) - limit} more"]
    return out


class TileJournal:
    """Append-only journal of finished tiles; see the module docstring for the format."""

    def __init__(self, path: str | Path, records: list | None = None):
        self.path = Path(path)
        self.records = records if records is not None else []  # read back: (kind, slice, key, payload)
        self._file = None

    # ------------------------------------------------------------------ reading

    @staticmethod
    def read(path: str | Path) -> tuple[dict | None, list, int]:
        """(fingerprint, records, length of the readable part) of an existing journal.

        Only the end may be cut short: a record whose write a kill or a crash interrupted (short,
        zeros where it should be, or failing its checksum as the last record) is dropped, and
        logged. A record failing its checksum with others after it, bytes that are no record, or
        a first record that is not the fingerprint raise OutputError naming the file as damaged.
        """
        path = Path(path)
        if path.is_dir():
            raise OutputError(f"The resume journal '{path}' is a directory, not a file. "
                              f"{_START_AGAIN}", _WORDS)
        data = path.read_bytes()
        pos, fingerprint, records = 0, None, []
        while pos < len(data):
            problem = _problem(data, pos)
            if problem == "cut":
                log.info("the last record of %s was cut short (its write was interrupted); "
                         "its tile is computed again", path.name)
                break
            if problem:
                raise _damaged(path, problem)
            end = pos + _HEAD.size + _HEAD.unpack_from(data, pos)[1]
            try:
                body = data[pos + _HEAD.size:end]
                group = body.startswith(_GROUP_BODY)
                record = _decode_group(body) if group else _decode(body)
            except (ValueError, KeyError, TypeError, OSError) as err:
                raise _damaged(path, f"the record at byte {pos} cannot be decoded: "
                                     f"{str(err).strip() or type(err).__name__}") from None
            if fingerprint is None:
                if group or record[0] != "fingerprint":
                    raise _damaged(path, "its first record is not the run's fingerprint")
                fingerprint = record[3]
            elif group:
                records.extend(record)
            else:
                records.append(record)
            pos = end
        return fingerprint, records, pos

    @classmethod
    def check(cls, path: str | Path, fingerprint: dict):
        """Read an existing journal (reads only); OutputError naming the differences when its
        run differs from ``fingerprint``. Returns what :meth:`read` does, or (None, [], 0)."""
        path = Path(path)
        if not path.exists():
            return None, [], 0
        old, records, good = cls.read(path)
        diff = differences(old, fingerprint) if old is not None else []
        if diff:
            raise OutputError(
                f"The unfinished sweep in '{path.parent}' was started with another "
                f"configuration ({'; '.join(diff)}). Rerun with the same settings to "
                f"resume it, pass {{overwrite}} to start again, or give another {{out}}.",
                overwrite="overwrite=True", out="output directory")
        return old, records, good

    @classmethod
    def open(cls, path: str | Path, fingerprint: dict, *, resume: bool,
             checked: tuple | None = None) -> "TileJournal":
        """Start a journal, or (``resume``) continue an existing one with the same fingerprint.

        Raises OutputError naming the differences when the existing journal's run differs.
        ``checked``: what :meth:`check` returned for this journal, to avoid reading it again.
        """
        path = Path(path)
        if resume and path.exists():
            old, records, good = checked if checked is not None else cls.check(path, fingerprint)
            if old is not None:
                journal = cls(path, records)
                journal._file = open(path, "r+b")
                journal._file.truncate(good)  # drop a record cut short by a kill
                journal._file.seek(good)
                return journal
        journal = cls(path)
        tmp = path.with_name(path.name + ".new")
        with open(tmp, "wb") as f:
            f.write(_encode("fingerprint", "", "", fingerprint))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        journal._file = open(path, "r+b")
        journal._file.seek(0, os.SEEK_END)
        return journal

    # ------------------------------------------------------------------ writing

    def append(self, kind: str, slice_name: str, key, payload) -> None:
        """Add one record (a finished tile: kind 'tile', payload a dict of arrays)."""
        self._write([_encode(kind, slice_name, key, payload)])

    def append_tiles(self, slice_name: str, tiles: list) -> None:
        """Add finished tiles ``[(key, {quantity: (n,) array}), ...]`` of a slice as one record,
        durable when this returns (one write, one fsync for all of them); read back, each is a
        ``tile`` record of its own. A record cut short by a kill loses the whole group, none of
        which had been reported done."""
        if tiles:
            self._write(_encode_group(slice_name, tiles))

    def _write(self, pieces: list) -> None:
        """Write a record given as consecutive pieces (bytes-like) and make it durable."""
        for piece in pieces:
            self._file.write(piece)
        self._file.flush()
        os.fsync(self._file.fileno())

    def resumed(self, kind: str, slice_name: str) -> dict:
        """Records of ``kind`` for a slice read back from an earlier run: key -> payload."""
        return {key: payload for k, name, key, payload in self.records
                if k == kind and name == slice_name}

    def close(self, delete: bool = False) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if delete:
            self.path.unlink(missing_ok=True)


_GROUP_BODY = b"LDG1"  # how the body of a record of several tiles starts (others are archives)
_ARRAY_KINDS = ("tile", "directions")  # records whose payload is a dict holding arrays


def _encode(kind: str, slice_name: str, key, payload) -> bytes:
    buf = io.BytesIO()
    arrays, plain = {}, payload
    if kind in _ARRAY_KINDS:
        arrays = {f"v_{name}": np.asarray(value) for name, value in payload.items()
                  if kind == "tile" or isinstance(value, np.ndarray)}
        plain = {name: value for name, value in payload.items() if f"v_{name}" not in arrays}
    header = json.dumps({"kind": kind, "slice": slice_name, "key": key, "json": plain})
    np.savez(buf, header=np.array(header), **arrays)
    body = buf.getvalue()
    return _HEAD.pack(_MAGIC, len(body), zlib.crc32(body)) + body


def _decode(body: bytes):
    with np.load(io.BytesIO(body), allow_pickle=False) as npz:
        header = json.loads(str(npz["header"]))
        if header["kind"] in _ARRAY_KINDS:
            payload = {**(header["json"] or {}),
                       **{name[2:]: npz[name] for name in npz.files if name.startswith("v_")}}
        else:
            payload = header["json"]
    key = header["key"]
    return header["kind"], header["slice"], tuple(key) if isinstance(key, list) else key, payload


def _encode_group(slice_name: str, tiles: list) -> list:
    """One record of tiles: ``LDG1``, a JSON line (the slice, each tile's key and rows (points),
    the quantities' names, dtypes and shapes past the first axis), then every tile's arrays as
    raw bytes, tile after tile, quantity by quantity. Returned as the record's consecutive
    pieces, the arrays' own memory among them: no archive and no copy, only a checksum, however
    many tiles the group holds."""
    names = list(tiles[0][1])
    dtypes = [np.asarray(tiles[0][1][name]).dtype for name in names]
    arrays = [np.ascontiguousarray(result[name], dtype)
              for _, result in tiles for name, dtype in zip(names, dtypes)]
    rows = [len(arrays[i]) for i in range(0, len(arrays), len(names))]  # one row per point
    header = {"slice": slice_name, "keys": [key for key, _ in tiles], "rows": rows,
              "names": names, "dtypes": [d.str for d in dtypes],
              "rest": [arrays[i].shape[1:] for i in range(len(names))]}
    pieces = [_GROUP_BODY + json.dumps(header).encode() + b"\n",
              *(memoryview(a).cast("B") for a in arrays)]
    crc, length = 0, 0
    for piece in pieces:
        crc, length = zlib.crc32(piece, crc), length + len(piece)
    return [_HEAD.pack(_MAGIC, length, crc), *pieces]


def _decode_group(body: bytes) -> list:
    """The ``tile`` records of a group record's ``body``, in the order they were appended."""
    line = body.index(b"\n")
    header = json.loads(body[len(_GROUP_BODY):line])
    values = bytearray(body[line + 1:])  # writable, as arrays read from an archive are
    dtypes = [np.dtype(d) for d in header["dtypes"]]
    out, at = [], 0
    for key, rows in zip(header["keys"], header["rows"]):
        payload = {}
        for name, dtype, rest in zip(header["names"], dtypes, header["rest"]):
            shape = (rows, *rest)
            count = int(np.prod(shape, dtype=np.int64))
            payload[name] = np.frombuffer(values, dtype, count, at).reshape(shape)
            at += count * dtype.itemsize
        out.append(("tile", header["slice"], tuple(key) if isinstance(key, list) else key, payload))
    if at != len(values):
        raise ValueError(f"{len(values) - at} bytes beyond its tiles' values")
    return out
