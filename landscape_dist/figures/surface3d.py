"""3-D surface and heat-map figures of a 2-D slice, per quantity (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # its backend is chosen in figures/__init__.py
import numpy as np
from matplotlib import colors

from .common import axis_labels, finish, format_colorbar, heights, on_slice


def _norm(values: np.ndarray, cfg):
    """A log colour scale over the finite values when they are positive and log levels are on."""
    finite = values[np.isfinite(values)]
    if cfg.log_levels and finite.size and finite.min() > 0 and finite.max() > finite.min():
        return colors.LogNorm(finite.min(), finite.max())
    if finite.size and finite.max() > finite.min():
        return colors.Normalize(finite.min(), finite.max())
    return None


def _label_axes(ax, surface) -> None:
    xlabel, ylabel = axis_labels(surface, short=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _title(surface, quantity: str, values: np.ndarray, what: str) -> str:
    masked = int(np.sum(~np.isfinite(values)))
    text = f"{quantity} on slice '{surface.name}' ({what})"
    return text + (f", {masked} non-finite points masked" if masked else "")


def plot_surface3d(surface, file: Path, cfg, quantity: str, show_path: bool) -> Path:
    """The slice as a 3-D surface coloured like the contours (log scale where positive), clipped
    to ``plot.zmin``/``zmax``; with the path drawn at its true value and, faintly, at the slice's
    value under it (where the path holds this quantity)."""
    raw = surface.shown[quantity]
    z, scale = heights(raw, cfg)
    X, Y = np.meshgrid(surface.xcoordinates, surface.ycoordinates)
    fig = plt.figure(figsize=(7.2, 5.6))
    ax = fig.add_subplot(projection="3d", computed_zorder=False)  # the path stays in front
    colour_values = np.where(np.isfinite(z), np.clip(raw, cfg.zmin, cfg.zmax), np.nan) \
        if (cfg.zmin is not None or cfg.zmax is not None) else raw
    norm = _norm(colour_values, cfg)
    if norm is not None:
        facecolors = plt.get_cmap("viridis")(norm(np.ma.masked_invalid(colour_values)))
        facecolors[~np.isfinite(z)] = (0, 0, 0, 0)  # diverged or clipped-out points: holes
        ax.plot_surface(X, Y, np.ma.masked_invalid(z), facecolors=facecolors, rstride=1,
                        cstride=1, linewidth=0, antialiased=False, shade=False, zorder=1)
        mappable = plt.cm.ScalarMappable(norm=norm, cmap="viridis")
        format_colorbar(fig.colorbar(mappable, ax=ax, shrink=0.6, pad=0.1, label=quantity))
    else:
        ax.text2D(0.5, 0.5, f"{quantity} has no finite range to draw", ha="center",
                  transform=ax.transAxes, color="tab:red")
    path = surface.path
    if show_path and path is not None and quantity in path.values and path.coords.shape[1] == 2:
        true_z, _ = heights(path.values[quantity], cfg)
        slice_z, _ = heights(on_slice(surface, quantity, path.coords), cfg)
        ax.plot(path.coords[:, 0], path.coords[:, 1], slice_z, color="black", alpha=0.35,
                linewidth=1.0, label="path, slice's value", zorder=5)
        ax.plot(path.coords[:, 0], path.coords[:, 1], true_z, color="tab:red", linewidth=1.6,
                label="path, true value", zorder=6)
        ax.legend(fontsize=7, loc="upper left")
    _label_axes(ax, surface)
    ax.set_zlabel(f"{scale}{quantity}")
    ax.set_title(_title(surface, quantity, raw, "3-D"), fontsize=9)
    return finish(fig, file, cfg.dpi, tight=False)


def plot_heatmap(surface, file: Path, cfg, quantity: str) -> Path:
    """The slice's values as a heat map on the grid's own cells (log colour scale where
    positive); diverged points grey."""
    raw = surface.shown[quantity]
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    norm = _norm(raw, cfg)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    mesh = ax.pcolormesh(surface.xcoordinates, surface.ycoordinates, np.ma.masked_invalid(raw),
                         norm=norm, cmap=cmap, shading="nearest")
    format_colorbar(fig.colorbar(mesh, ax=ax, label=quantity))
    ax.plot(0, 0, marker="+", color="red", markersize=10)
    _label_axes(ax, surface)
    ax.set_title(_title(surface, quantity, raw, "heat map"), fontsize=9)
    return finish(fig, file, cfg.dpi)
