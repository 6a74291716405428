"""``landscape``: the loss landscape of a Keras model held in memory, as an object.

Objects in, objects out: a compiled model, data as NumPy arrays (or a ``tf.data.Dataset``, or a
dict of named datasets) and, optionally, the path recorded by a :class:`PathRecorder` during the
user's own ``fit``. Every YAML setting is a keyword: each top-level section takes a dict
(``grid={"x": {"points": 21}}``, ``evaluation={...}``), with shorthands for what a notebook
says most (``slices=["random", "pca"]``, ``workers=2``, ``quantities=[...]``). The keywords
become the plain data a YAML file holds and are checked by the same rules
(:func:`~landscape_dist.config.config_from_dict`), their messages named by the keyword.

The sweep is :func:`~landscape_dist.commands.sweep.sweep`'s, in a directory of its own: the
model as ``model.keras`` (its centre, as ``train`` leaves it) and the path as
``trajectory.h5``; the workers get the model as ``.keras`` bytes with the custom objects
registered with Keras, and the data as arrays. Without ``out`` the directory is temporary and
removed once the result is read.
"""

from __future__ import annotations

import dataclasses
import difflib
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..config.loading import load_config
from ..config.rules import SettingError
from ..config.schema import Config
from ..core.layout import WeightLayout
from ..errors import SourceError, in_terms
from ..model.sources import DataSpec, ModelSpec, check_trainable
from ..model.trajectory import write_trajectory
from ..sweeping.inputs import data_specs, with_subset
from ..sweeping.pools import LOCAL
from .keywords import SECTIONS, SHORTHANDS, configure, settings_from_keywords  # noqa: F401
from .results import Landscape

__all__ = ["landscape", "configure", "settings_from_keywords", "SECTIONS", "SHORTHANDS"]

# the words errors of the model and data use, as this function's caller names them
MODEL_WORDS = {"model": "'model' argument"}
WORDS = {"model": "'model' argument", "data": "'data' argument", "centre": "'model.centre' key",
         "shards": "'data' keyword's 'shards'", "unsafe": "model={'unsafe_deserialization': True}",
         "train": "model.fit with a PathRecorder", "out": "'out' argument"}
_ARGUMENTS = ("model", "data", "path", "slices", "grid", "directions", "quantities", "workers",
              "in_process", "out", "formats", "overwrite", "config", "progress", "callbacks")


def landscape(model=None, data=None, *, path=None, slices=None, grid=None, directions=None,
              quantities=None, workers: int | None = None, in_process: bool | None = None,
              out: str | Path | None = None, formats=None, overwrite: bool = False,
              config=None, progress: bool = True, callbacks=None, **sections) -> Landscape:
    """Sweep the loss landscape of ``model`` on ``data``; returns a :class:`Landscape`.

    ``model``: a compiled Keras model (or a model source as the YAML names one: ``"parabola"``,
    a ``.keras`` file). ``data``: ``(x, y)`` NumPy arrays, a ``tf.data.Dataset`` of ``(x, y)``
    (read into memory), a dict of named datasets ``{"train": (x, y), "test": (x, y)}``, or a
    data source as the YAML names one. ``path``: a :class:`PathRecorder` after ``fit``, its
    ``.path``, or a ``trajectory.h5`` file; ``pca`` slices need it.

    ``slices``: slice names that are plane kinds (``["random", "pca"]``) or slice dicts as in
    YAML. ``grid``, ``directions``, ``quantities``: for every slice. ``workers``: that many Ray
    workers; ``in_process=True``: no Ray. Without either (and without ``cluster=`` or a
    ``config``), the sweep runs in this process. ``out``: a directory that keeps the files the
    command line writes (``surface.h5``, ``model.keras``, ``trajectory.h5`` and the figures of
    ``formats``); without it, nothing is left on disk. ``config``: a :class:`Config` or a YAML
    file the keywords override. ``sections``: any other top-level section as a dict
    (``evaluation={"batch_size": 64}``, ``cluster={...}``, ``plot={...}``, ``train={...}``).
    """
    unknown = [k for k in sections if k not in SECTIONS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], SECTIONS + _ARGUMENTS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else f" Sections: {', '.join(SECTIONS)}."
        raise TypeError(f"landscape() got an unexpected keyword argument '{unknown[0]}'.{hint}")
    _check_choices(workers, in_process, out, formats)
    base = _base_settings(config)
    config = configure(base, slices=slices, grid=grid, directions=directions,
                       quantities=quantities, workers=workers, in_process=in_process,
                       formats=formats, **sections)
    return _sweep_in_memory(config, model, data, path, out, overwrite, progress, callbacks)


def _check_choices(workers, in_process, out, formats) -> None:
    """The keywords that are not settings: one line each for what cannot work together."""
    if in_process not in (None, True, False):
        raise TypeError(f"The 'in_process' keyword must be True or False. Got {in_process!r} "
                        f"instead.")
    if workers is not None and in_process:
        raise ValueError(f"The 'workers' keyword asks for {workers!r} Ray workers, and "
                         f"'in_process' for none. Give one of them.")
    if formats and out is None:
        raise ValueError(f"The 'formats' keyword writes {list(formats)} files into 'out', which "
                         f"is not given. Give out='DIR', or leave formats out and call "
                         f"result.plot().")


def _base_settings(config) -> dict:
    """The plain settings of ``config`` (a Config or a YAML file), or {} for none."""
    if config is None:
        return {}
    if isinstance(config, (str, Path)):
        config = load_config(config)
    if not isinstance(config, Config):
        raise TypeError(f"The 'config' keyword must be a Config (ld.load_config(...)) or the path "
                        f"of a YAML file. Got {type(config).__name__} instead.")
    return config.to_dict()


def _sweep_in_memory(config: Config, model, data, path, out, overwrite: bool, progress: bool,
                     callbacks) -> Landscape:
    """Sweep ``config`` in ``out`` (a temporary directory when None) with the model, data and
    path given in memory; the result, read back into memory."""
    from ..store.outdir import refuse_existing_surface
    from ..sweeping.pools import pool_for
    from .sweep import sweep

    keep = out is not None
    directory = Path(out) if keep else Path(tempfile.mkdtemp(prefix="landscape-"))
    try:
        with in_terms(WORDS):
            if keep:  # before anything is written there
                refuse_existing_surface(directory, overwrite)
            model_spec, config = _model_inputs(model, config, directory)
            data_spec, config = _data_inputs(data, config)
            recorded = _path_inputs(path, model_spec, config)
            if model_spec is not None:
                directory.mkdir(parents=True, exist_ok=True)
                (directory / "model.keras").write_bytes(model_spec.payload)
            if recorded is not None:
                directory.mkdir(parents=True, exist_ok=True)
                write_trajectory(directory / "trajectory.h5", *recorded)
            started = None
            if model_spec is not None or data_spec is not None:
                started = pool_for(config, model_spec or _model_spec_of(config),
                                   data_spec or data_specs(config), wait=False)
            summary = sweep(config, directory, overwrite=overwrite, progress=progress,
                            callbacks=callbacks, started=started)
        if keep and config.plot.formats:
            from .plot import plot

            plot(directory / "surface.h5", config=config)
        return Landscape.read(directory / "surface.h5", config, summary,
                              directory if keep else None)
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def _model_spec_of(config: Config) -> ModelSpec:
    return ModelSpec.from_source(config.model.source, config.model.unsafe_deserialization)


def _model_inputs(model, config: Config, directory: Path):
    """The spec workers rebuild ``model`` from (None when the configuration names the model),
    and ``config`` with ``model.source`` the ``model.keras`` it is written to in ``directory``.
    A model that is not compiled, has no weights, cannot be saved, or is rebuilt other than it
    is, is refused in one line before any work."""
    if model is None:
        return None, config
    if isinstance(model, (str, Path)):
        return None, _replaced(config, "model", source=str(model))
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"The 'model' argument must be a compiled Keras model, or a model source "
                        f"('parabola', a .keras file). Got {type(model).__name__} instead.")
    if model.loss is None:
        raise SourceError("The {model} must be compiled with a loss. Call "
                          "model.compile(loss=...) first.", MODEL_WORDS)
    check_trainable(model, model.name)
    spec = ModelSpec.from_model(model, f"model '{model.name}'", config.model.unsafe_deserialization)
    _check_rebuilt(model, spec)
    if config.cluster.backend != LOCAL:
        _check_portable(spec)
    return spec, _replaced(config, "model", source=str((directory / "model.keras").absolute()))


def _check_rebuilt(model, spec: ModelSpec) -> None:
    """Rebuild ``model`` from ``spec`` once, as every worker will; refuse it in one line when
    that fails or gives other weights."""
    fix = ("Give every custom layer a get_config() returning its constructor's arguments and "
           "register it with @keras.saving.register_keras_serializable().")
    try:
        rebuilt = spec.build()
    except SourceError as err:
        if "safe mode" in err.template:
            raise
        reason = str(err).removeprefix(f"The model file '{spec.source}' is not a Keras model "
                                       f"Keras can load").lstrip(": ")
        raise SourceError(f"The {{model}} cannot be rebuilt from its .keras form, as its workers "
                          f"rebuild it ({reason.rstrip('.')}). {fix}", MODEL_WORDS) from None
    ours = WeightLayout.from_variables(model.weights)
    theirs = WeightLayout.from_variables(rebuilt.weights)
    differs = ours.mismatch(theirs, "the model", "its rebuilt copy")
    if differs is None and not all(np.array_equal(a, b) for a, b in
                                   zip(model.get_weights(), rebuilt.get_weights())):
        differs = "the weights' values differ"
    if differs:
        raise SourceError(f"The {{model}} is rebuilt from its .keras form with other weights "
                          f"than it has ({differs}). {fix}", MODEL_WORDS)


def _check_portable(spec: ModelSpec) -> None:
    """Refuse, in one line, custom objects Ray cannot send to its workers."""
    from ray import cloudpickle

    try:
        cloudpickle.dumps(spec)
    except Exception as err:  # noqa: BLE001 - pickling raises many kinds
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        names = sorted(spec.custom_objects or {})
        raise SourceError(f"The {{model}}'s custom objects registered with Keras ({names}) cannot "
                          f"be sent to Ray workers ({type(err).__name__}: {first}). Define them "
                          f"in a module the workers can import, or give in_process=True.",
                          MODEL_WORDS) from None


def _replaced(config: Config, section: str, **values) -> Config:
    """``config`` with settings of one section replaced, checked as the section checks them;
    a refusal is named by the argument that gave the value."""
    try:
        part = dataclasses.replace(getattr(config, section), **values)
    except SettingError as err:
        raise ValueError(f"The '{section}' argument must be {err.requirement}. Got {err.got!r} "
                         f"instead.") from None
    return dataclasses.replace(config, **{section: part})


def _data_inputs(data, config: Config):
    """The workers' data spec (a dict of them for named datasets; None when the configuration
    names the data) and ``config`` with ``data.source`` naming what ``data`` holds."""
    if data is None:
        return None, config
    if isinstance(data, (str, Path)):
        return None, _replaced(config, "data", source=str(data))
    if isinstance(data, dict):
        if not data:
            raise ValueError("The 'data' argument must be a non-empty dict of named datasets. "
                             "Got {} instead.")
        specs = {str(name): _one_dataset(value, config, f"dataset '{name}' of the 'data' argument")
                 for name, value in data.items()}
        return specs, _replaced(config, "data", source={k: s.source for k, s in specs.items()})
    spec = _one_dataset(data, config, "'data' argument")
    return with_subset(spec, config), _replaced(config, "data", source=spec.source)


def _one_dataset(value, config: Config, what: str) -> DataSpec:
    """A DataSpec holding one dataset's arrays (``(x, y)`` or a ``tf.data.Dataset``), or naming
    a source as the YAML does."""
    settings = {"num_shards": config.data.shards, "examples": config.evaluation.examples,
                "examples_seed": config.evaluation.examples_seed}
    if isinstance(value, (str, Path)):
        source = str(Path(value).resolve()) if Path(value).exists() else str(value)
        return DataSpec(source, **settings)
    if type(value).__module__.startswith("tensorflow") and hasattr(value, "element_spec"):
        value = _materialised(value, what)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"The {what} must be (x, y) arrays, a tf.data.Dataset of (x, y), a dict "
                        f"of named datasets or a data source. Got {type(value).__name__}"
                        f"{f' of {len(value)} items' if isinstance(value, (tuple, list)) else ''}"
                        f" instead.")
    with in_terms({"data": what}):
        return DataSpec.from_arrays(value[0], value[1], **settings)


def _materialised(dataset, what: str) -> tuple:
    """``(x, y)`` arrays of every element of a ``tf.data.Dataset`` of ``(x, y)`` pairs, batched
    (concatenated) or not (stacked)."""
    import tensorflow as tf

    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(f"The {what} must be a tf.data.Dataset of (x, y) pairs. Got one of "
                         f"{spec} instead.")
    elements = list(dataset.as_numpy_iterator())
    if not elements:
        raise ValueError(f"The {what} is an empty tf.data.Dataset. Give at least one example.")
    batched = tf.nest.flatten(spec[0])[0].shape[:1].as_list() == [None]
    join = np.concatenate if batched else np.stack
    return tuple(tf.nest.map_structure(lambda *parts: join(parts), *[e[i] for e in elements])
                 for i in (0, 1))


def _path_inputs(path, model_spec: ModelSpec | None, config: Config):
    """What ``trajectory.h5`` is written from: (trajectory, every, unit), the trajectory in the
    model's own layout; None for no path. A path of another structure than the model is
    refused in one line saying what differs."""
    if path is None:
        return None
    from ..model.recorder import PathRecorder  # Keras: a path is swept with its model
    from ..model.trajectory import Trajectory, read_trajectory

    every, unit = (path.every, path.unit) if isinstance(path, PathRecorder) else (1, "epoch")
    if isinstance(path, PathRecorder):
        path = path.path
    elif isinstance(path, (str, Path)):
        path = read_trajectory(path)
    if not isinstance(path, Trajectory):
        raise TypeError(f"The 'path' argument must be a PathRecorder, its .path or a "
                        f"trajectory.h5 file. Got {type(path).__name__} instead.")
    model = (model_spec or _model_spec_of(config)).build()
    layout = WeightLayout.from_variables(model.trainable_variables)
    differs = layout.mismatch(path.layout, "the model", "the path")
    if differs:
        raise SourceError(f"The 'path' argument was recorded from another model than the "
                          f"{{model}} ({differs}). Record the path of this model's own fit.",
                          MODEL_WORDS)
    return dataclasses.replace(path, layout=layout), every, unit
