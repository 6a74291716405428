"""landscape_dist: loss-landscape slices of Keras models, evaluated on a pool of Ray actors.

The names here are the public surface; everything else is importable from its module and may
change. Extension points: :data:`landscape_dist.planes.PLANE_KINDS`,
:data:`landscape_dist.model.quantities.QUANTITIES`, :data:`landscape_dist.figures.formats.OUTPUT_FORMATS`.
"""

import os as _os

# TensorFlow's C++ start-up banners drown the progress bar; a user's own setting wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .callbacks import SweepCallback  # noqa: E402
from .config import Config, ConfigError, config_from_dict, load_config  # noqa: E402
from .errors import LandscapeError, TileError  # noqa: E402
from .execution import InProcessPool, RayPool  # noqa: E402
from .model.trajectory import read_trajectory  # noqa: E402
from .pipeline import plot, run, sweep, train  # noqa: E402
from .store.surface import Surface, read_surface  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Config", "ConfigError", "InProcessPool", "LandscapeError", "RayPool", "Surface",
    "SweepCallback", "TileError", "config_from_dict", "load_config", "plot", "read_surface",
    "read_trajectory", "run", "sweep", "train",
]
