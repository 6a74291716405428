"""Registries: the extension points, each keyed by the name used in the configuration.

Three things grow: plane kinds (``directions.kind``, :data:`landscape_dist.planes.PLANE_KINDS`),
quantities (what a point yields and how shards combine,
:data:`landscape_dist.model.quantities.QUANTITIES`) and output formats (``plot.format``,
:data:`landscape_dist.figures.formats.OUTPUT_FORMATS`). Adding one means adding one module that
registers itself, and its tests.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, in the order they were registered."""

    def __init__(self, what: str):
        self.what = what  # e.g. "plane kind", used in messages
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` on a class or function."""
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"The {self.what} {name!r} is registered twice.")
            self._entries[name] = entry
            return entry
        return add

    def remove(self, name: str) -> T:
        """Unregister ``name`` (tests, plugins being reloaded); returns its entry."""
        return self._entries.pop(name)

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"No {self.what} named {name!r}; known: {', '.join(self._entries)}.") from None

    def __contains__(self, name) -> bool:
        return name in self._entries

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)
