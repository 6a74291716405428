"""Plane kinds: the ways a slice's coordinate system is built (``directions.kind``).

Each kind is a :class:`PlaneKind` listed in :data:`~landscape_dist.registry.PLANE_KINDS` under its
configuration name, with the dataclass of its settings (:class:`~landscape_dist.config.DirectionConfig`
or a subclass adding its own). A kind also answers for the planes it built, from their stored
metadata: their caption, axis labels, whether the training path is drawn on them by default, and
the keys of their summary (:func:`kind_of` finds the kind of a plane read back from a file). A new
built-in kind is one module here, one line in the registry's table, and its tests; a kind from
outside the package registers itself with ``PLANE_KINDS.register(name)``.
"""

from ..registry import PLANE_KINDS
from .base import PlaneContext, PlaneKind, build_plane, kind_of, resolve_axes

__all__ = ["PLANE_KINDS", "PlaneContext", "PlaneKind", "build_plane", "kind_of", "resolve_axes"]
