"""landscape_dist: loss-landscape slices of Keras models, evaluated on a pool of Ray actors."""

import os as _os

# TensorFlow's C++ start-up banners drown the progress bar; a user's own setting wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from .callbacks import LivePreview, ProgressBar, SweepCallback
from .config import (AxisConfig, ClusterConfig, Config, ConfigError, DataConfig, DirectionConfig,
                     EvaluationConfig, GridConfig, ModelConfig, PlotConfig, SliceConfig, TrainConfig,
                     config_from_dict, load_config)
from .directions import TrajectoryPCA, cosine, normalize_direction, random_directions
from .driver import InProcessPool, RayPool, TileError, connect_ray
from .evaluator import LandscapeEvaluator, combine_shards
from .grid import Tile, assemble, axis_coordinates, split_tiles
from .journal import TileJournal
from .layout import WeightLayout
from .models import DataSpec, ModelSpec, SourceError
from .pipeline import plot, run, sweep, train
from .projection import project_path
from .surface import Surface, read_surface
from .trajectory import TrajectoryRecorder, read_trajectory

__version__ = "0.1.0"

__all__ = [
    "AxisConfig", "ClusterConfig", "Config", "ConfigError", "DataConfig", "DataSpec",
    "DirectionConfig", "EvaluationConfig", "GridConfig", "InProcessPool", "LandscapeEvaluator",
    "LivePreview", "ModelConfig",
    "ModelSpec", "PlotConfig", "ProgressBar", "RayPool", "SliceConfig", "SourceError", "Surface",
    "SweepCallback", "Tile", "TileError", "TileJournal", "TrainConfig", "TrajectoryPCA", "TrajectoryRecorder",
    "WeightLayout", "assemble", "axis_coordinates", "combine_shards", "config_from_dict",
    "connect_ray", "cosine",
    "load_config", "normalize_direction", "plot", "project_path", "random_directions",
    "read_surface", "read_trajectory", "run", "split_tiles", "sweep", "train",
]
