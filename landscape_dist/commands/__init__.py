"""The library functions behind the command line, one module each; every CLI command is a thin
shell over the function of the same name."""

from .curvature import curvature
from .estimate import estimate
from .info import info
from .landscape import landscape
from .plot import plot
from .results import Landscape
from .run import run
from .sharpness import sharpness
from .sweep import sweep
from .train import train

__all__ = ["Landscape", "curvature", "estimate", "info", "landscape", "plot", "run", "sharpness",
           "sweep", "train"]
