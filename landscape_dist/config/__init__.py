"""Run configuration: the schema (frozen dataclasses) and its loading from YAML and overrides."""

from .loading import apply_overrides, build, config_from_dict, load_config
from .schema import (AxisConfig, ClusterConfig, Config, ConfigError, DataConfig, DirectionConfig,
                     CurvatureConfig, EvaluationConfig, GridConfig, ModelConfig, PlotConfig, SettingError, SliceConfig,
                     TrainConfig)

__all__ = ["AxisConfig", "ClusterConfig", "Config", "ConfigError", "DataConfig", "DirectionConfig",
           "CurvatureConfig", "EvaluationConfig", "GridConfig", "ModelConfig", "PlotConfig", "SettingError",
           "SliceConfig", "TrainConfig", "apply_overrides", "build", "config_from_dict",
           "load_config"]
