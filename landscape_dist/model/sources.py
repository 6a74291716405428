"""Where models and data come from: built-in examples, .keras/.npz files, or module:function.

Errors name the inputs by slot (``{model}``, ``{data}``, ``{shards}``, ``{centre}``), filled with
this module's parameter names; the sweep rewords them with the settings' names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import io
import json
import os
import re
import sys
import tempfile
import traceback
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.labels import label_arrays, label_count, map_labels
from ..core.shards import shard_bounds
from ..errors import SourceError
from . import examples
from .runtime import check_keras_backend

IN_MEMORY = "in-memory:"  # the source of data held in memory (DataSpec.from_arrays)

# the words a message uses for each input, as this module's callers name them
MODEL = {"model": "'source' parameter"}
DATA = {"data": "'source' parameter", "shards": "'num_shards' parameter"}


def _factory(source: str, slot: str, search_path: str | None):
    module_name, _, func_name = source.partition(":")
    if search_path and search_path not in sys.path:
        sys.path.insert(0, search_path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SourceError(f"The {{{slot}}} names module '{module_name}', which cannot be "
                          f"imported ({err}). Give 'module:function' for a module on the Python path.",
                          {slot: "'source' parameter"})
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SourceError(f"The {{{slot}}} must name a function of module '{module_name}'. "
                          f"Got {source!r}, and '{func_name}' is not a function there.",
                          {slot: "'source' parameter"})
    return func


_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory(source: str) -> bool:
    """Whether ``source`` names a ``module:function`` (and no file or directory of that name)."""
    return bool(_FACTORY.match(source)) and not os.path.exists(source)


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker needs to build its own replica of the model's architecture.

    ``payload`` holds the bytes of a .keras file so workers on other machines need no shared disk.
    """

    source: str
    payload: bytes | None = None
    unsafe_deserialization: bool = False
    search_path: str | None = None  # where 'module:function' sources are imported from
    # the custom objects registered with Keras where a model in memory was saved
    # (``keras.saving.get_custom_objects()``): a worker elsewhere has not registered them
    custom_objects: dict | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_model(cls, model, name: str = "in-memory model",
                   unsafe_deserialization: bool = False) -> "ModelSpec":
        """The spec of a live Keras model: its ``.keras`` bytes and the custom objects
        registered with Keras, so that a worker elsewhere rebuilds it. A model that cannot be
        saved is refused in one line."""
        import keras

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            try:
                model.save(path)
            except Exception as err:  # noqa: BLE001 - Keras raises many kinds for what it cannot save
                raise SourceError(f"The {{model}} cannot be saved as a .keras file, which its "
                                  f"workers rebuild it from ({type(err).__name__}: "
                                  f"{_first_line(err)}). Give every custom layer, loss or metric "
                                  f"a get_config() and register it with "
                                  f"@keras.saving.register_keras_serializable().", MODEL) from None
            payload = path.read_bytes()
        return cls(name, payload, unsafe_deserialization,
                   custom_objects=dict(keras.saving.get_custom_objects()))

    @classmethod
    def from_source(cls, source: str, unsafe_deserialization: bool = False) -> "ModelSpec":
        if source in examples.MODELS or is_factory(source):
            return cls(source, None, unsafe_deserialization, os.getcwd())
        path = Path(source)
        if path.suffix != ".keras":
            raise SourceError(f"The {{model}} must be a built-in example "
                              f"({', '.join(examples.MODELS)}), a .keras file or 'module:function'. "
                              f"Got {source!r} instead.", MODEL)
        if not path.is_file():
            raise SourceError(f"The {{model}} names '{source}', which does not exist. "
                              f"Give the path of a saved .keras model.", MODEL)
        payload = path.read_bytes()
        if not zipfile.is_zipfile(io.BytesIO(payload)):
            raise SourceError(f"The {{model}} names '{source}', which is not a Keras "
                              f"model file (not a .keras archive). Give a file saved with "
                              f"model.save('name.keras').", MODEL)
        return cls(source, payload, unsafe_deserialization)

    def build(self):
        """A compiled Keras model with the source's architecture (and its own weights)."""
        check_keras_backend()
        import keras

        if self.source in examples.MODELS:
            model = examples.MODELS[self.source]()
        elif self.payload is None:
            model = call_factory(_factory(self.source, "model", self.search_path), self.source, "model")
        else:
            model = load_keras_file(self.payload, self.source, self.unsafe_deserialization,
                                    self.custom_objects)
        if not isinstance(model, keras.Model):
            raise SourceError(f"The {{model}} must give a Keras model. "
                              f"Got {type(model).__name__} from {self.source!r} instead.", MODEL)
        if model.loss is None:
            raise SourceError(f"The model from {self.source!r} must be compiled with a loss. "
                              f"Call model.compile(loss=...) before returning or saving it.")
        check_trainable(model, self.source)
        return model

    def content_digest(self, with_weights: bool = True) -> str:
        """sha256 of the model this spec builds: its architecture (layer classes and settings,
        layer names in order of appearance), its loss and, ``with_weights``, its weights. Stable
        across builds in one process (Keras numbers its default names per process)."""
        import keras

        model = self.build()
        names = {layer.name: f"layer{i}" for i, layer in
                 enumerate(model._flatten_layers(include_self=True, recursive=True))}
        config = _renamed(model.get_config(), names)
        loss = model.loss if isinstance(model.loss, (str, dict, list, tuple)) else (
            keras.losses.serialize(model.loss) if isinstance(model.loss, keras.losses.Loss)
            else f"{getattr(model.loss, '__module__', '')}.{getattr(model.loss, '__qualname__', model.loss)}")
        digest = hashlib.sha256(json.dumps([type(model).__name__, config, loss], sort_keys=True,
                                           default=repr).encode())
        if with_weights:
            for value in model.get_weights():
                digest.update(str((value.dtype.str, value.shape)).encode())
                digest.update(np.ascontiguousarray(value).tobytes())
        return digest.hexdigest()


def _renamed(value, names: dict):
    """``value`` (a model's configuration) with every layer name replaced by its position."""
    if isinstance(value, dict):
        return {k: _renamed(v, names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_renamed(v, names) for v in value]
    return names.get(value, value) if isinstance(value, str) else value


def check_trainable(model, source: str) -> None:
    """Refuse a model that has no trainable weights (nothing to move along a plane): one line
    naming the source; an unbuilt model is told to give its input shape."""
    if model.trainable_weights:
        return
    if not model.built:
        raise SourceError(f"The {{model}} names a model with no weights yet ({source!r} is not "
                          f"built). Give it an input shape (keras.Input(...) as its first "
                          f"layer) so that its weights exist.", MODEL)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    held = f"only {frozen} frozen ones" if frozen else "none at all"
    raise SourceError(f"The {{model}} names a model with no trainable weights ({source!r} has "
                      f"{held}). Give a model with at least one trainable layer, or set "
                      f"layer.trainable = True on the layers to explore.", MODEL)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def load_keras_file(payload: bytes, name: str, unsafe_deserialization: bool = False,
                    custom_objects: dict | None = None):
    """Load a .keras model from its bytes, in Keras's safe mode unless the user opted out;
    ``custom_objects`` (registered name -> class or function) resolve the custom layers, losses
    and metrics it names."""
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        path.write_bytes(payload)
        try:
            with warnings.catch_warnings():  # the optimizer's state is not what is evaluated
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                return keras.models.load_model(path, safe_mode=not unsafe_deserialization,
                                               custom_objects=custom_objects)
        except ValueError as err:
            if "safe_mode" in str(err) or "lambda" in str(err).lower():
                raise SourceError(f"The model file '{name}' holds code (a Lambda layer) that Keras "
                                  f"runs only outside safe mode. If you trust the file, set "
                                  f"{{unsafe}}.", unsafe="unsafe_deserialization=True") from None
            raise SourceError(f"The model file '{name}' is not a Keras model Keras can load: "
                              f"{str(err).splitlines()[0]}") from None
        except (OSError, KeyError, TypeError) as err:
            raise SourceError(f"The model file '{name}' is not a Keras model Keras can load "
                              f"({type(err).__name__}). Give a file saved with model.save('...keras').") from None


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
        return dataclasses.replace(spec, source=f"{IN_MEMORY}{spec.content_digest()[:16]}")

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
        elif self.source.startswith(IN_MEMORY):
            raise SourceError(f"The {{data}} names '{self.source}', data held in memory by the "
                              f"process that made it, not here. Give the arrays again.", DATA)
        elif self.source in examples.DATASETS:
            x, y = examples.DATASETS[self.source]()
        elif is_factory(self.source):
            func = _factory(self.source, "data", self.search_path)
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
                   and _accepts_shards(_factory(self.source, "data", self.search_path)))
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


def call_factory(func, source: str, slot: str, **kwargs):
    """``func(**kwargs)``; an exception it raises becomes one line naming the source, the error
    and where it was raised."""
    try:
        return func(**kwargs)
    except SourceError:
        raise
    except Exception as err:  # noqa: BLE001 - any error of user code is reported the same way
        frame = traceback.extract_tb(err.__traceback__)[-1]
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise SourceError(f"The {{{slot}}} names '{source}', which raised {type(err).__name__}"
                          f"{': ' + first if first else ''} (at {Path(frame.filename).name}:"
                          f"{frame.lineno}). Fix the function or give another source.",
                          {slot: "'source' parameter"}) from err


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


def load_centre(model, path: str | Path) -> None:
    """Set ``model``'s weights from a .keras or .weights.h5 file (architecture must match)."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"The {{centre}} names '{path}', which does not exist. "
                          f"Give a .keras or .weights.h5 file, or {{train}} first.",
                          centre="'path' parameter", train="train()")
    words = {"centre": "'path' parameter", "model": "model"}
    try:
        if path.name.endswith(".weights.h5"):
            model.load_weights(path)
            return
        if path.suffix != ".keras":
            raise SourceError(f"The {{centre}} names '{path}', which is neither a .keras nor a "
                              f".weights.h5 file. Give one of those.", words)
        other = keras.models.load_model(path, compile=False)
    except SourceError:
        raise
    except Exception as err:  # noqa: BLE001 - Keras and h5py raise many kinds for a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceError(f"The {{centre}} names '{path}', whose weights Keras cannot load into the "
                          f"{{model}} ({first[:200]}). Give weights saved from the same model.",
                          words) from None
    theirs = [tuple(v.shape) for v in other.weights]
    ours = [tuple(v.shape) for v in model.weights]
    if theirs != ours:
        raise SourceError(f"The {{centre}} names '{path}', which has another architecture than "
                          f"the {{model}} ({len(theirs)} tensors vs {len(ours)}).", words)
    model.set_weights(other.get_weights())
