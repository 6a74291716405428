"""What several output formats take from a surface: file names per quantity, heights with the
configured clipping and scale, and the slice's values where the path is projected."""

from __future__ import annotations

import numpy as np

from ..model.quantities import kind_of_quantity
from ..planes.base import kind_of

def figures_apart(names) -> tuple[dict[str, tuple[str, str]], frozenset[str]]:
    """Of a surface's quantities ``names``, those drawn apart from the filled contours every
    other quantity gets: the eigen maps, as dataset prefix ('' with one dataset, 'train/' ...)
    -> (largest, smallest eigenvalue's quantity), for each prefix holding both; and the
    quantities given no filled contours of their own."""
    names = set(names)
    maps, apart = {}, set()
    for name in sorted(names):
        together = kind_of_quantity(name).drawn_together  # its kind says (the eigen map's pair)
        prefix, _, base = name.rpartition("/")
        prefix = f"{prefix}/" if prefix else ""
        if together and base in together:
            apart.add(base)
            pair = tuple(f"{prefix}{q}" for q in together)
            if base == together[0] and all(q in names for q in pair):
                maps[prefix] = pair
    return maps, frozenset(apart) & names


def axis_labels(surface, short: bool = False) -> list[str]:
    """The labels of the slice's axes, as the kind of its plane gives them (``short`` where
    there is little room: 3-D views, heat maps, the interactive page)."""
    return kind_of(surface.meta).axis_labels(surface.meta, surface.ndim, short)


def file_stem(slice_name: str, quantity: str, main: str) -> str:
    """``<slice>`` for the main loss, ``<slice>_<quantity>`` otherwise ('/' as '-')."""
    return slice_name if quantity == main else f"{slice_name}_{quantity.replace('/', '-')}"


def quantities(surface) -> list[str]:
    """The surface's quantities, the main loss first."""
    names = list(surface.values)
    main = surface.loss_name
    return [main] + [n for n in names if n != main]


def heights(values: np.ndarray, cfg) -> tuple[np.ndarray, str]:
    """Values as drawn in 3-D and meshes: clipped to ``cfg.zmin``/``cfg.zmax`` (where set), on a
    log10 scale with ``cfg.log_z`` (non-positive values become NaN); and the axis label's scale."""
    z = np.array(values, dtype=np.float64)
    finite = np.isfinite(z)
    if cfg.zmin is not None:
        z[finite] = np.maximum(z[finite], cfg.zmin)
    if cfg.zmax is not None:
        z[finite] = np.minimum(z[finite], cfg.zmax)
    if cfg.log_z:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(z > 0, np.log10(z), np.nan)
        return z, "log10 "
    return z, ""


def on_slice(surface, quantity: str, coords: np.ndarray) -> np.ndarray:
    """The slice's ``quantity`` at plane coordinates (P, k), linearly interpolated between grid
    points (NaN outside the grid): what the slice says the path's value is."""
    from scipy.interpolate import RegularGridInterpolator

    values = surface.shown[quantity]
    if surface.ndim == 1:
        return np.interp(coords[:, 0], surface.xcoordinates, values, left=np.nan, right=np.nan)
    interp = RegularGridInterpolator((surface.ycoordinates, surface.xcoordinates), values,
                                     bounds_error=False)
    return interp(np.stack([coords[:, 1], coords[:, 0]], axis=1))
