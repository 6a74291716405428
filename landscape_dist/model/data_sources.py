"""Where the evaluation data comes from: built-in examples, .npz files, directories of .npy
files, ``module:function``, or arrays held in memory; and the checks every source's data passes.

Errors name the inputs by slot (``{data}``, ``{shards}``), filled with this module's parameter
names; the sweep rewords them with the settings' names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.labels import label_arrays, label_count, map_labels
from ..core.shards import shard_bounds
from ..errors import SourceError
from . import examples
from .factories import call_factory, find_factory, is_factory

IN_MEMORY = "in-memory:"  # the source of data held in memory (DataSpec.from_arrays)
# the in-memory specs alive in this process, by source: a spec that names one without its arrays
# (the configuration's own, as a sweep prepared here builds it) reads them while the holder lives
_HELD = weakref.WeakValueDictionary()

# the words a message uses for each input, as this module's callers name them
DATA = {"data": "'source' parameter", "shards": "'num_shards' parameter"}


def _accepts_shards(func) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "shard" in params and "num_shards" in params


@dataclass(frozen=True)
class DataSpec:
    """Where a worker loads its evaluation data from, and how many shards it is split into.

    Sources: a built-in name, an ``.npz`` file with arrays ``x`` and ``y`` (or ``y_<output>`` for
    each output of a model with several), a directory holding ``x.npy`` and ``y.npy``
    (memory-mapped: a shard reads only its own rows), or ``module:function`` returning ``(x, y)``
    where ``y`` may be a dict keyed by output name or a list in output order; a function with
    ``shard`` and ``num_shards`` parameters is asked for its shard only.
    """

    source: str
    search_path: str | None = field(default_factory=os.getcwd)
    num_shards: int = 1
    examples: int | None = None  # a fixed random subset of this many examples (drafts)
    examples_seed: int = 0
    # (x, y) held in memory (see :meth:`from_arrays`); the source then names their digest, so
    # that specs compare (and journals fingerprint) by content
    arrays: tuple | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_arrays(cls, x, y, **settings) -> "DataSpec":
        """A spec holding ``(x, y)`` itself (``y`` an array, a list in output order or a dict by
        output name), checked as any source's data is; its ``source`` is
        ``in-memory:<sha256 of the examples, 16 digits>``. ``settings``: ``num_shards``,
        ``examples``, ``examples_seed``."""
        x, y = np.asarray(x), map_labels(np.asarray, y)
        spec = cls(IN_MEMORY, None, arrays=(x, y), **settings)
        spec = dataclasses.replace(spec, source=f"{IN_MEMORY}{spec.content_digest()[:16]}")
        _HELD[spec.source] = spec
        return spec

    def chosen(self, total: int) -> np.ndarray:
        """The examples of the subset (``examples`` of ``total``, seeded, in increasing order)."""
        if self.examples > total:
            raise SourceError(f"The 'evaluation.examples' setting is {self.examples}, more than the "
                              f"{total} examples of '{self.source}'. Use at most {total}, or null "
                              f"for all of them.")
        rng = np.random.default_rng(self.examples_seed)
        return np.sort(rng.choice(total, self.examples, replace=False))

    def load(self, shard: int | None = None, with_total: bool = False):
        """(x, y) arrays: the whole dataset, or shard ``shard`` of ``num_shards``; with
        ``examples``, only the subset's examples (of the shard's rows). ``with_total``: also the
        number of examples in the whole dataset, (x, y, total)."""
        sliced = shard is not None and self.num_shards > 1
        start = 0
        if self.arrays is not None:
            x, y = self.arrays
        elif (held := _HELD.get(self.source)) is not None:
            x, y = held.arrays
        elif self.source.startswith(IN_MEMORY):
            raise SourceError(f"The {{data}} names '{self.source}', data held in memory by the "
                              f"process that made it, not here. Give the arrays again.", DATA)
        elif self.source in examples.DATASETS:
            x, y = examples.DATASETS[self.source]()
        elif is_factory(self.source):
            func = find_factory(self.source, "data", self.search_path)
            if sliced and _accepts_shards(func) and self.examples is None:
                out = call_factory(func, self.source, "data", shard=shard, num_shards=self.num_shards)
                sliced = False  # the factory gave just this shard
            else:
                out = call_factory(func, self.source, "data")
            try:
                x, y = (out["x"], out["y"]) if isinstance(out, dict) else out
            except (KeyError, TypeError, ValueError):
                raise SourceError(f"The {{data}} names '{self.source}', which must return (x, y) or "
                                  f"{{'x': ..., 'y': ...}}. Got {type(out).__name__} instead.",
                                  DATA) from None
        else:
            x, y = self._load_file()
        total = len(x)
        if sliced:
            start, stop = shard_bounds(len(x), self.num_shards, shard)
            if stop <= start:
                raise SourceError(f"The {{shards}} is {self.num_shards}, more than the "
                                  f"{len(x)} examples of '{self.source}'. Use at most {len(x)} shards.",
                                  DATA)
        else:
            stop = total
        if self.examples is not None:  # the subset's rows that fall in this shard
            rows = self.chosen(total)
            rows = rows[(rows >= start) & (rows < stop)]
            x, y = x[rows], map_labels(lambda a: a[rows], y)
        elif sliced:
            x, y = x[start:stop], map_labels(lambda a: a[start:stop], y)
        x, y = np.asarray(x), map_labels(np.asarray, y)  # reads a memory-mapped shard into memory
        check_values(x, y, start if sliced else 0)
        if len(x) == 0:
            raise SourceError(f"The data from '{self.source}' is empty. Give at least one example.")
        try:
            n_labels = label_count(y)
        except ValueError as err:
            raise SourceError(f"The data from '{self.source}' is not usable: {err}") from None
        if len(x) != n_labels:
            raise SourceError(f"The data from '{self.source}' has {len(x)} inputs but {n_labels} labels.")
        return (x, y, total) if with_total else (x, y)

    def content_digest(self) -> str:
        """sha256 of every example this source gives (all of them, whatever ``examples``): the
        inputs' and each label array's dtype, example shape and bytes, in order. A function with
        ``shard`` and ``num_shards`` parameters is read shard by shard; the digest is the same
        for any number of shards."""
        whole = dataclasses.replace(self, examples=None)
        sharded = (is_factory(self.source) and self.num_shards > 1
                   and _accepts_shards(find_factory(self.source, "data", self.search_path)))
        hashes: list = []
        for shard in (range(self.num_shards) if sharded else [None]):
            x, y = whole.load(shard)
            arrays = [("x", x)] + [(f"y{key}", a) for key, a in (
                y.items() if isinstance(y, dict) else enumerate(label_arrays(y)))]
            if not hashes:
                hashes = [(name, a.dtype.str, a.shape[1:], hashlib.sha256()) for name, a in arrays]
            for (_, _, _, digest), (_, array) in zip(hashes, arrays):
                digest.update(np.ascontiguousarray(array).tobytes())
        total = hashlib.sha256()
        for name, dtype, shape, digest in hashes:
            total.update(f"{name} {dtype} {shape} {digest.hexdigest()}".encode())
        return total.hexdigest()

    def _load_file(self):
        path = Path(self.source)
        if path.is_dir():
            files = [path / "x.npy", path / "y.npy"]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise SourceError(f"The {{data}} names the directory '{self.source}', which must hold "
                                  f"x.npy and y.npy. It lacks {', '.join(missing)}.", DATA)
            return tuple(_read_array(f, self.source, lambda f=f: np.load(f, mmap_mode="r"))
                         for f in files)
        if path.suffix != ".npz":
            raise SourceError(f"The {{data}} must be a built-in example "
                              f"({', '.join(examples.DATASETS)}), an .npz file, a directory with "
                              f"x.npy and y.npy, or 'module:function'. Got {self.source!r} instead.",
                              DATA)
        if not path.is_file():
            raise SourceError(f"The {{data}} names '{self.source}', which does not exist.", DATA)
        archive = _read_array(path, self.source, lambda: np.load(path))
        with archive:
            names = archive.files
            if "x" not in names or ("y" not in names and not any(k.startswith("y_") for k in names)):
                raise SourceError(f"The data file '{self.source}' must hold arrays 'x' and 'y' (or "
                                  f"'y_<output>' for each output of the model). It holds {names}.")
            read = {k: _read_array(path, self.source, lambda k=k: archive[k], k) for k in names
                    if k in ("x", "y") or k.startswith("y_")}
            return read["x"], read["y"] if "y" in read else {
                k[2:]: v for k, v in read.items() if k.startswith("y_")}


def _read_array(path, source: str, read, name: str | None = None):
    """``read()`` of a NumPy file; unreadable files and object arrays as one-line errors."""
    try:
        return read()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if name is not None and "allow_pickle" in text:
            raise SourceError(f"The array '{name}' of data file '{path}' holds Python objects "
                              f"(dtype object), which are not read for safety. Save numeric "
                              f"arrays.") from None
        if "pickled" in text:  # neither a zip nor an .npy header: NumPy would unpickle it
            text = "not an .npz or .npy file"
        of = f"The array '{name}' of data file" if name else "The data file"
        raise SourceError(f"{of} '{path}' cannot be read as NumPy data ({text}). Give an .npz "
                          f"file or .npy files saved by NumPy.") from None


def _rows(mask: np.ndarray, offset: int) -> str:
    rows = np.flatnonzero(mask) + offset
    shown = ", ".join(str(r) for r in rows[:5])
    return shown + (", ..." if len(rows) > 5 else "")


def check_values(x: np.ndarray, y, offset: int = 0) -> None:
    """Refuse inputs or labels that are not numbers, or that hold NaN or infinite values (naming
    how many examples and the first rows, counted from ``offset``)."""
    for what, arrays in (("inputs", [x]), ("labels", label_arrays(y))):
        for array in arrays:
            if array.dtype.kind not in "biuf":
                raise SourceError(f"The {{data}} gives {what} of type {array.dtype}, which are not "
                                  f"numbers. Give numeric {what}.", DATA)
            if array.dtype.kind == "f" and len(array):
                bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
                if bad.any():
                    n = int(bad.sum())
                    raise SourceError(f"The {{data}} gives {n} example{'s' if n > 1 else ''} "
                                      f"whose {what} "
                                      f"hold NaN or infinite values (rows {_rows(bad, offset)}). "
                                      f"Remove or fix them.", DATA)
