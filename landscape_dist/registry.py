"""Registries: the four growth points, each keyed by the name used in the configuration.

Plane kinds (``directions.kind``), quantities (``slices[].quantities``: what a point yields and how
shards combine it), output formats (``plot.format``) and execution backends (``cluster.backend``)
grow by registration. Each registry lists its built-in entries once, as name -> where it lives
(``"module:attribute"``), and imports an entry only when it is first looked up: the configuration
checks names against a registry without importing the planes, the figures or the Keras side.

Adding a built-in means one module and one line in the tables below; adding one from outside the
package means ``REGISTRY.register("name")`` on a class or function (or ``REGISTRY.add(name,
"module:attribute")``), and its tests. An entry registered in the driver reaches Ray workers by its
location (:func:`plugins`, :func:`restore_plugins`): it must live in a module, not in ``__main__``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


def locate(location: str):
    """The object at ``"package.module:attribute"`` (the attribute may be dotted)."""
    module, _, attribute = location.partition(":")
    value = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def location_of(entry) -> str | None:
    """Where ``entry`` (a class or function) can be imported from, or None (defined in a
    function, or in ``__main__``, which another process cannot import)."""
    if not (inspect.isclass(entry) or inspect.isfunction(entry)):
        return None
    module, name = entry.__module__, entry.__qualname__
    if not module or module == "__main__" or "<locals>" in name:
        return None
    return f"{module}:{name}"


@dataclass(frozen=True)
class OutputFormat:
    """An output format with settings of its own, registered in :data:`OUTPUT_FORMATS` in place
    of a plain writer function: ``write(surface_file, out_dir, plot_config, settings) -> paths``,
    and ``settings``, the frozen dataclass of its settings (``plot.options.<name>`` in the
    configuration, checked when the configuration is loaded)."""

    write: Callable
    settings: type


class Registry(Generic[T]):
    """Entries by name: the built-ins (imported when first used), then those registered, in
    order."""

    def __init__(self, what: str, builtins: dict[str, str]):
        self.what = what  # e.g. "plane kind", used in messages
        self._builtins = dict(builtins)
        self._locations: dict[str, str] = dict(builtins)  # name -> "module:attribute"
        self._entries: dict[str, T] = {}  # name -> the entry, once imported or registered

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` on a class or function."""
        def add(entry: T) -> T:
            self._add(name, entry, location_of(entry))
            return entry
        return add

    def add(self, name: str, location: str) -> None:
        """Register the entry at ``location`` (``"module:attribute"``), imported when first
        used."""
        self._add(name, None, location)

    def _add(self, name: str, entry, location: str | None) -> None:
        # a module that registers its entries when imported, imported by a worker that knew
        # them from the driver (restore), registers the same location again: not a clash
        known = self._locations.get(name)
        again = known is not None and known == location and name not in self._entries
        if not again and (name in self._locations or name in self._entries):
            raise ValueError(f"The {self.what} {name!r} is registered twice.")
        if location is not None:
            self._locations[name] = location
        if entry is not None:
            self._entries[name] = entry

    def remove(self, name: str):
        """Unregister an entry added from outside (tests, plugins being reloaded)."""
        if name in self._builtins:
            raise ValueError(f"The built-in {self.what} {name!r} cannot be removed.")
        self._locations.pop(name, None)
        return self._entries.pop(name, None)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            if name not in self._locations:
                raise KeyError(f"No {self.what} named {name!r}; known: {', '.join(self.names())}.")
            self._entries[name] = locate(self._locations[name])
        return self._entries[name]

    def __contains__(self, name) -> bool:
        return name in self._locations or name in self._entries

    def names(self) -> tuple[str, ...]:
        """Every name, built-ins first, without importing any entry."""
        return tuple(dict.fromkeys([*self._locations, *self._entries]))

    def added(self) -> dict[str, str]:
        """The entries registered from outside the package that another process can import:
        name -> location (what a pool sends its workers, see :meth:`restore`)."""
        return {name: where for name, where in self._locations.items()
                if name not in self._builtins}

    def restore(self, added: dict[str, str]) -> None:
        """Register in this process what :meth:`added` listed in another (a worker's start)."""
        for name, where in added.items():
            if name not in self:
                self.add(name, where)


# The built-ins, one line each, in the order messages list them.
PLANE_KINDS: Registry = Registry("plane kind", {
    "random": "landscape_dist.planes.random:RandomPlane",
    "pca": "landscape_dist.planes.pca:PCAPlane",
    "interpolate": "landscape_dist.planes.between:InterpolatePlane",
    "models": "landscape_dist.planes.between:ModelsPlane",
    "file": "landscape_dist.planes.file:FilePlane",
    "hessian": "landscape_dist.planes.hessian:HessianPlane",
    "curve": "landscape_dist.planes.curve:CurvePlane",
})
QUANTITIES: Registry = Registry("quantity", {
    "loss": "landscape_dist.model.quantities:LossAndMetrics",
    "hessian_max": "landscape_dist.model.quantities:HessianExtremes",
    "hessian_min": "landscape_dist.model.quantities:HessianExtremes",
})
OUTPUT_FORMATS: Registry = Registry("output format", {
    "png": "landscape_dist.figures.formats:write_png",
    "pdf": "landscape_dist.figures.formats:write_pdf",
    "svg": "landscape_dist.figures.formats:write_svg",
    "vtp": "landscape_dist.figures.formats:write_vtp",
    "html": "landscape_dist.figures.formats:write_html",
    "gif": "landscape_dist.figures.formats:write_gif",
    "mp4": "landscape_dist.figures.formats:write_mp4",
    "tensorboard": "landscape_dist.figures.formats:write_tensorboard",
})
BACKENDS: Registry = Registry("execution backend", {
    "ray": "landscape_dist.execution.ray_pool:RayPool",
    "local": "landscape_dist.execution.local:InProcessPool",
})


REGISTRIES = {"plane kinds": PLANE_KINDS, "quantities": QUANTITIES, "output formats": OUTPUT_FORMATS,
              "backends": BACKENDS}


def _import_root(location: str) -> str | None:
    """The directory that must be on ``sys.path`` for ``location``'s module to import."""
    module = sys.modules.get(location.partition(":")[0])
    file = getattr(module, "__file__", None)
    if not file:
        return None
    root = os.path.dirname(os.path.abspath(file))
    for _ in range(module.__name__.count(".") + (os.path.basename(file) == "__init__.py")):
        root = os.path.dirname(root)
    return root


def plugins() -> dict:
    """What this process registered from outside the package, for a worker process to register
    too (:func:`restore_plugins`): each registry's added entries by location, and the
    directories their modules import from."""
    entries = {key: registry.added() for key, registry in REGISTRIES.items() if registry.added()}
    roots = {_import_root(where) for added in entries.values() for where in added.values()}
    return {"entries": entries, "paths": sorted(r for r in roots if r)}


def restore_plugins(found: dict) -> None:
    """Register in this process what :func:`plugins` found in another."""
    for path in found.get("paths", ()):
        if path not in sys.path:
            sys.path.append(path)
    for key, added in found.get("entries", {}).items():
        REGISTRIES[key].restore(added)
