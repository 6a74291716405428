"""Execution: jobs, the worker, the in-process and Ray pools, and the Ray cluster."""

from .cluster import check_resources, connect_ray
from .jobs import Job, TileError
from .local import InProcessPool
from .ray_pool import RayPool

__all__ = ["InProcessPool", "Job", "RayPool", "TileError", "check_resources", "connect_ray"]
