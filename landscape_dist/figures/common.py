"""What several output formats take from a surface: file names per quantity, heights with the
configured clipping and scale, the slice's values where the path is projected, contour levels
and axis labels."""

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


# ---------------------------------------------------------------- colour-bar ticks

def _within(ticks, vmin: float, vmax: float) -> np.ndarray:
    ticks = np.asarray(ticks, dtype=np.float64)
    slack = 1e-9 * max(abs(vmin), abs(vmax))
    return ticks[(ticks >= vmin - slack) & (ticks <= vmax + slack)]


def _linear_ticks(vmin: float, vmax: float, most: int) -> np.ndarray:
    """Multiples of the smallest 1, 2 or 5 x 10^k step that puts at most ``most`` in range."""
    raw = (vmax - vmin) / max(most - 1, 1)
    exponent = int(np.floor(np.log10(raw)))
    step = next(m * 10.0 ** exponent for m in (1, 2, 5, 10) if m * 10.0 ** exponent >= raw * (1 - 1e-9))
    ticks = np.arange(np.ceil(vmin / step - 1e-9), np.floor(vmax / step + 1e-9) + 1) * step
    return np.round(ticks, max(0, 1 - int(np.floor(np.log10(step)))))  # no float noise


def _log_ticks(vmin: float, vmax: float, most: int) -> np.ndarray:
    """1, 2 and 5 x 10^k in range; every decade's 1 alone (every second, fifth ... decade)
    where those are more than ``most``."""
    lo, hi = int(np.floor(np.log10(vmin))), int(np.ceil(np.log10(vmax)))
    for mantissas, every in (((1, 2, 5), 1), ((1,), 1), ((1,), 2), ((1,), 5), ((1,), 10)):
        ticks = _within([m * 10.0 ** k for k in range(lo, hi + 1) if k % every == 0
                         for m in mantissas], vmin, vmax)
        if len(ticks) <= most:
            return ticks
    return ticks


def round_ticks(vmin: float, vmax: float, log: bool = False, most: int = 8) -> np.ndarray:
    """Colour-bar ticks at round values in [vmin, vmax]: 1, 2, 5 x 10^k on a log scale (when at
    least three of them fall in range), else multiples of a 1, 2 or 5 x 10^k step; at most
    ``most`` of them. Empty for an empty or non-finite range."""
    if not (np.isfinite(vmin) and np.isfinite(vmax)) or not vmax > vmin:
        return np.array([])
    if log and vmin > 0:
        ticks = _log_ticks(vmin, vmax, most)
        if len(ticks) >= 3:
            return ticks
    return _within(_linear_ticks(vmin, vmax, most), vmin, vmax)


def format_colorbar(cbar) -> None:
    """Ticks at round values on a vertical matplotlib colour bar (:func:`round_ticks`: 1, 2, 5 x
    10^k where its norm is a log one), labelled by :func:`tick_text`, whatever its levels;
    minor ticks unlabelled."""
    from matplotlib import colors, ticker

    vmin, vmax = sorted(cbar.ax.get_ylim())
    ticks = round_ticks(vmin, vmax, log=isinstance(cbar.norm, colors.LogNorm))
    if len(ticks):
        cbar.set_ticks(ticks, labels=[tick_text(t) for t in ticks])
    cbar.ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def tick_text(value: float) -> str:
    """A tick's label without spurious digits: ``0.3``, ``150``, ``2e-5``, ``1e6``."""
    text = f"{float(value):.6g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return "0" if text == "-0" else text


# ---------------------------------------------------------------- 1-D curves

def curve_quantities(names) -> tuple[list[str], list[str]]:
    """Of a 1-D slice's quantities ``names``, those drawn as curves: the losses (``loss``,
    ``<dataset>/loss``), which share one axis, and the metrics (every other quantity), which
    share another; quantities with a figure of their own (the eigen map's pair) are left out."""
    eigen_maps, _ = figures_apart(names)
    apart = {q for pair in eigen_maps.values() for q in pair}
    shown = [n for n in names if n not in apart]
    losses = [n for n in shown if n.rsplit("/", 1)[-1] == "loss"]
    return losses, [n for n in shown if n not in losses]


def log_axis_fits(values, cfg) -> bool:
    """Whether curves of ``values`` (a list of arrays) go on a log axis: ``plot.log_levels`` on
    and every finite value > 0."""
    finite = np.concatenate([np.ravel(v)[np.isfinite(np.ravel(v))] for v in values])
    return bool(cfg.log_levels and finite.size and finite.min() > 0)


def curve_label(name: str) -> str:
    """A curve's legend label: dataset and quantity (``train loss``, ``test accuracy``)."""
    return name.replace("/", " ")


# ---------------------------------------------------------------- decimation for display

def stride_indices(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` of the indices 0..n-1 by a constant stride, the first and the last
    always kept (the last interval may be shorter); all of them where ``n <= max_points``."""
    if max_points < 2:
        raise ValueError(f"The 'max_points' parameter must be an integer >= 2. Got {max_points!r} "
                         f"instead.")
    if n <= max_points:
        return np.arange(n)
    stride = -(-(n - 1) // (max_points - 1))
    kept = np.arange(0, n, stride)
    return kept if kept[-1] == n - 1 else np.append(kept, n - 1)


def decimated(surface, max_points: int):
    """The slice as shown at most ``max_points`` per axis (:func:`stride_indices`): a copy with
    strided coordinates, values, picture and done-mask; the path is kept whole. The slice itself
    where it is small enough."""
    import dataclasses

    cols = stride_indices(len(surface.xcoordinates), max_points)
    rows = None if surface.ndim == 1 else stride_indices(len(surface.ycoordinates), max_points)
    if len(cols) == len(surface.xcoordinates) and (rows is None or len(rows) == len(surface.ycoordinates)):
        return surface
    index = np.s_[cols] if rows is None else np.ix_(rows, cols)

    def cut(arrays: dict) -> dict:
        return {name: np.asarray(values)[index] for name, values in arrays.items()}

    return dataclasses.replace(
        surface, xcoordinates=surface.xcoordinates[cols],
        ycoordinates=None if rows is None else surface.ycoordinates[rows],
        values=cut(surface.values), filled=cut(surface.filled), done=surface.done[index],
        interpolated=None if surface.interpolated is None else surface.interpolated[index])


def shown_at(shown, whole) -> str:
    """``shown at 201 x 201 of 1001 x 1001 points`` where ``shown`` is a decimated ``whole``;
    empty where it is the whole slice."""
    def size(s) -> str:
        return " x ".join(str(n) for n in s.values[next(iter(s.values))].shape[::-1])

    if shown is whole:
        return ""
    return f"shown at {size(shown)} of {size(whole)} points"


def finish(fig, file, dpi: int, tight: bool = True):
    """Save ``fig`` to ``file`` (a path or a binary file object; its suffix or
    ``savefig.format`` says the format) and return ``file``; with ``file=None``, return the
    figure itself, unsaved (a notebook shows it). Either way the figure leaves pyplot's list, so
    that no figure is kept open or shown twice."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    plt.close(fig)
    if file is None:
        return fig
    fig.savefig(file, dpi=dpi)
    return file


def contour_levels(values: np.ndarray, n: int, log: bool = True) -> np.ndarray:
    """``n`` levels spanning the finite values; log-spaced when all of them are > 0."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([0.0, 1.0])
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-6)
    if log and lo > 0:
        return np.geomspace(lo, hi, n)
    return np.linspace(lo, hi, n)


def label_axes(ax, surface) -> None:
    """Label the axes of a slice's figure as the kind of its plane names them."""
    labels = axis_labels(surface)
    ax.set_xlabel(labels[0])
    if surface.ndim == 2:
        ax.set_ylabel(labels[1])
