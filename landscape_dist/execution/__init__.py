"""Execution: jobs, the worker, the pool interface and its scheduler, the in-process and Ray
pools, and the Ray cluster."""

from .cluster import check_resources, connect_ray
from .jobs import Job, TileError
from .local import InProcessPool
from .pool import Pool, WorkerPool
from .pools import make_pool
from .ray_pool import RayPool
from .scheduler import Backend, JobFailed, Scheduler, WorkerLost

__all__ = ["Backend", "InProcessPool", "Job", "JobFailed", "Pool", "RayPool", "Scheduler",
           "TileError", "WorkerLost", "WorkerPool", "check_resources", "connect_ray", "make_pool"]
