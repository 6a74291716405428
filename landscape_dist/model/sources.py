"""Where models come from: built-in examples, .keras files, or module:function; and a centre's
weights from a file. The data's sources are in :mod:`.data_sources` (importable from here too).

Errors name the inputs by slot (``{model}``, ``{centre}``), filled with this module's parameter
names; the sweep rewords them with the settings' names.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SourceError
from . import examples
# re-exported: the data's sources have long been imported from here
from .data_sources import DATA, IN_MEMORY, DataSpec, check_values  # noqa: F401
from .factories import call_factory, find_factory, is_factory  # noqa: F401 (is_factory re-exported)
from .runtime import check_keras_backend

# the words a message uses for each input, as this module's callers name them
MODEL = {"model": "'source' parameter"}


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
            func = find_factory(self.source, "model", self.search_path)
            model = call_factory(func, self.source, "model")
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
