"""Growth points added from outside the package, as a user's own module would add them: a plane
kind, a quantity and an output format (the backend is ``thread_backend.ThreadPool``). The tests
register them; Ray workers import this module by its location to register them there too."""

from dataclasses import dataclass

import numpy as np

from landscape_dist.config import DirectionConfig
from landscape_dist.core.plane import Plane
from landscape_dist.core.quantities import POINTS, Part, QuantitySet
from landscape_dist.model.quantities import QuantityKind
from landscape_dist.planes import PlaneKind
from landscape_dist.store.surface import read_surface


@dataclass(frozen=True)
class AxesDirections(DirectionConfig):
    """Settings of a test kind: the directions are the unit vectors of two weights."""

    first: int = 0
    second: int = 1


class AxesPlane(PlaneKind):
    """Unit vectors of single weights, saying so in its captions, labels and summaries."""

    config = AxesDirections
    summary_keys = ("kind", "axes")  # the cosine (0 here) is left out of its summaries

    def build(self, cfg, context, k):
        axes = [cfg.first, cfg.second][:k]
        directions = np.zeros((k, context.layout.size), np.float32)
        directions[np.arange(k), axes] = 1.0
        return Plane.make(context.centre, directions, context.layout,
                          {**self.common_meta(cfg, context.centre), "axes": axes})

    def caption(self, meta):
        return f"unit vectors of weights {' and '.join(str(i) for i in meta['axes'])}"

    def axis_labels(self, meta, ndim, short=False):
        return [f"w{i}" if short else f"weight {i} alone" for i in meta["axes"][:ndim]]

    def draws_path(self, meta):
        return True


class SquaredNorm(QuantityKind):
    """||w||^2 at each point: depends on the weights only, so shards take it once."""

    def describe(self):
        return QuantitySet((Part("squared_norm", "first"),))

    def compute(self, which, items):
        weights = self.evaluator.weights_at(items) if which == POINTS else np.asarray(items)
        return {"squared_norm": np.sum(weights.astype(np.float64) ** 2, axis=1)}


def write_npz(surface_file, out, cfg):
    """Every slice's values as ``<slice>.npz``."""
    written = []
    for name, surface in read_surface(surface_file).items():
        path = out / f"{name}.npz"
        np.savez(path, **surface.values)
        written.append(str(path))
    return written


@dataclass(frozen=True)
class NpzSettings:
    """Settings of the test format ``npz2``: compressed or not, and a file-name suffix."""

    compressed: bool = False
    suffix: str = ""


def write_npz_with_settings(surface_file, out, cfg, settings: NpzSettings):
    """Every slice's values as ``<slice><suffix>.npz``, compressed if the settings say so."""
    save = np.savez_compressed if settings.compressed else np.savez
    written = []
    for name, surface in read_surface(surface_file).items():
        path = out / f"{name}{settings.suffix}.npz"
        save(path, **surface.values)
        written.append(str(path))
    return written
