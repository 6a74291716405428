"""landscape_dist: loss-landscape slices of Keras models, evaluated on a pool of Ray actors.

The names here are the public surface; everything else is importable from its module and may
change. Extension points (:mod:`landscape_dist.registry`): ``PLANE_KINDS``, ``QUANTITIES``,
``OUTPUT_FORMATS`` and ``BACKENDS``.
The names are imported when first used, so that ``import landscape_dist`` (and the command line's
``--help``) does not load TensorFlow or Ray.
"""

import importlib as _importlib
import os as _os

# TensorFlow's C++ start-up banners drown the progress bar; a user's own setting wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The package is built on TensorFlow: Keras 3 must use that backend in this process (and in the
# workers, which import this package first), whatever the shell's KERAS_BACKEND says. A session
# that imported Keras on another backend already is told so when a command runs
# (``model.runtime.check_keras_backend``).
_os.environ["KERAS_BACKEND"] = "tensorflow"

__version__ = "0.1.0"

_PUBLIC = {
    "Config": "config", "ConfigError": "config", "config_from_dict": "config",
    "load_config": "config", "LandscapeError": "errors", "TileError": "errors",
    "InProcessPool": "execution", "RayPool": "execution", "SweepCallback": "callbacks",
    "read_trajectory": "model.trajectory", "plot": "commands", "run": "commands",
    "sweep": "commands", "train": "commands", "Surface": "store.surface",
    "read_surface": "store.surface", "curvature": "commands", "estimate": "commands",
    "info": "commands", "landscape": "commands", "Landscape": "commands",
    "PathRecorder": "model.recorder", "sharpness": "commands",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        value = getattr(_importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'landscape_dist' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
