"""Figures of a surface: contour lines, filled contours, 1-D curves, the path and its true loss.

Library code never calls ``plt.show()``; figures are written to files (PNG, PDF or SVG by suffix).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # its backend is chosen in figures/__init__.py
import numpy as np
from matplotlib import colors

from ..config.schema import PlotConfig
from ..core.fidelity import describe as describe_fidelities
from ..core.projection import off_plane_fraction
from ..planes.base import kind_of
from ..store.surface import Surface, read_surface
# contour_levels and label_axes re-exported: other figures have long imported them from here
from .common import (contour_levels, curve_label, curve_quantities, figures_apart,  # noqa: F401
                     file_stem, finish, format_colorbar, label_axes, log_axis_fits, quantities)
from .compare import plot_datasets, plot_seeds
from .curves import overlay_curves, plot_along_curves


def caption_text(surface: Surface) -> str:
    """A caption: what the plane's kind says of it (e.g. its directions' normalisation and
    cosine, or the explained variance), then whether it is a draft or refined."""
    m = surface.meta
    text = kind_of(m).caption(m)
    subset = next(iter((m.get("subset") or {}).values()), None)
    if subset:
        text += f"; draft: {subset['examples']:,} of {subset['of']:,} examples"
    refined = surface.refinement
    if refined:
        text += (f"; refined: {refined['evaluated']:,} of {refined['points']:,} points evaluated, "
                 f"the rest interpolated")
    if surface.fidelity:
        text += f"; {describe_fidelities(surface.fidelity)}"
    return text


def caption(surface: Surface, width: int = 90) -> str:
    """:func:`caption_text` wrapped to lines that fit a figure's width."""
    import textwrap

    return textwrap.fill(caption_text(surface), width)


def draws_path(surface: Surface, cfg: PlotConfig) -> bool:
    """Whether the recorded path is drawn on ``surface``: ``plot.show_path``, where ``auto``
    asks the plane's kind."""
    if surface.path is None or cfg.show_path == "never":
        return False
    return cfg.show_path == "always" or kind_of(surface.meta).draws_path(surface.meta)


def _overlay_path(ax, surface: Surface, fig=None):
    coords = surface.path.coords
    if coords.shape[1] < 2:
        return
    ax.plot(coords[:, 0], coords[:, 1], color="black", linewidth=0.8, alpha=0.6, zorder=3)
    points = ax.scatter(coords[:, 0], coords[:, 1], c=surface.path.step, cmap="plasma", s=12, zorder=4)
    ax.plot(*coords[0, :2], marker="o", color="white", markeredgecolor="black", markersize=8,
            zorder=5, label="start")
    ax.plot(*coords[-1, :2], marker="*", color="red", markeredgecolor="black", markersize=13,
            zorder=5, label="end" if not surface.runs else "run 0 end")
    for (name, run), colour in zip(surface.runs.items(), ("tab:cyan", "tab:olive", "tab:pink",
                                                          "tab:brown", "tab:gray")):
        c = run.coords
        if c.shape[1] < 2:
            continue
        ax.plot(c[:, 0], c[:, 1], color=colour, linewidth=1.2, marker=".", markersize=4,
                zorder=4, label=name.replace("run", "run "))
        ax.plot(*c[-1, :2], marker="*", color=colour, markeredgecolor="black", markersize=12,
                zorder=5)
    ax.legend(loc="upper right", fontsize=8)
    if fig is not None:
        format_colorbar(fig.colorbar(points, ax=ax, label="training step", pad=0.01))


def _mark_models(ax, surface: Surface) -> None:
    """The models a plane runs between, at their coordinates, with their names."""
    coords = surface.meta.get("model_coords")
    if not coords:
        return
    for i, (ref, xy) in enumerate(coords.items()):
        label = f"{'ABC'[i] if i < 3 else i}: {Path(ref).name}"
        if surface.ndim == 1:
            ax.axvline(xy[0], color="tab:red", linestyle=":", linewidth=1)
            ax.annotate(label, (xy[0], 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                        ha="center", va="bottom", color="tab:red")
        else:
            ax.plot(xy[0], xy[1], marker="D", color="tab:red", markeredgecolor="white",
                    markersize=8, zorder=6)
            ax.annotate(label, (xy[0], xy[1]), textcoords="offset points", xytext=(6, 6),
                        fontsize=8, color="tab:red", zorder=6)


def plot_contour(surface: Surface, file: Path, cfg: PlotConfig, quantity: str | None = None,
                 filled: bool = False, levels: np.ndarray | None = None) -> Path:
    """Contour lines with labelled log-spaced levels, or filled contours with a colour bar;
    ``levels`` shared with comparable quantities (default: from this one's values)."""
    quantity = quantity or surface.loss_name
    z = np.ma.masked_invalid(surface.shown[quantity])
    if levels is None:
        levels = contour_levels(surface.shown[quantity], cfg.levels, cfg.log_levels)
    use_log = cfg.log_levels and levels[0] > 0
    X, Y = np.meshgrid(surface.xcoordinates, surface.ycoordinates)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    norm = colors.LogNorm(levels[0], levels[-1]) if use_log else None
    if z.count() == 0:  # every point diverged: say so, draw no levels
        ax.set_xlim(surface.xcoordinates[0], surface.xcoordinates[-1])
        ax.set_ylim(surface.ycoordinates[0], surface.ycoordinates[-1])
        ax.text(0.5, 0.6, f"{quantity} is NaN or infinite at every point", ha="center",
                va="center", transform=ax.transAxes, fontsize=10, color="tab:red")
    elif filled:
        cs = ax.contourf(X, Y, z, levels=levels, norm=norm, cmap="viridis", extend="neither")
        format_colorbar(fig.colorbar(cs, ax=ax, label=quantity))
    else:
        cs = ax.contour(X, Y, z, levels=levels, norm=norm, cmap="viridis", linewidths=0.9)
        ax.clabel(cs, cs.levels[::3], inline=True, fontsize=7, fmt="%.3g")
    if draws_path(surface, cfg):
        _overlay_path(ax, surface, fig if not filled else None)
    ax.plot(0, 0, marker="+", color="red", markersize=10, zorder=6)
    _mark_models(ax, surface)
    overlay_curves(ax, surface)  # kind: curve, the curve and the line on their plane
    label_axes(ax, surface)
    masked = int(np.sum(~np.isfinite(surface.shown[quantity])))
    title = f"{quantity} on slice '{surface.name}'"
    if masked:
        title += f" ({masked} non-finite points masked)"
    ax.set_title(f"{title}\n{caption(surface)}", fontsize=9)
    return finish(fig, file, cfg.dpi)


def draw_curves(ax, surface: Surface, cfg: PlotConfig) -> list:
    """The curves of a 1-D slice on ``ax``: the losses on its own axis ('loss', a log axis when
    positive), the metrics on a second axis at the right ('metric'); one colour per dataset,
    losses solid and metrics dashed, one legend whose labels give dataset and quantity. Returns
    the axes drawn on."""
    losses, metrics = curve_quantities(list(surface.values))
    datasets, shown = surface.datasets, losses + metrics
    kinds = list(dict.fromkeys(q.rpartition("/")[2] for q in metrics))

    def plot(on, names):
        for q in names:
            dataset, _, base = q.rpartition("/")
            if len(datasets) > 1:  # a colour per dataset, a line style per quantity
                colour = f"C{datasets.index(dataset)}" if dataset in datasets else "C7"
                dashes = "-" if q in losses else ("--", ":", "-.")[kinds.index(base) % 3]
            else:
                colour, dashes = f"C{shown.index(q)}", "-" if q in losses else "--"
            on.plot(surface.xcoordinates, np.ma.masked_invalid(surface.shown[q]), color=colour,
                    linestyle=dashes, label=curve_label(q))

    plot(ax, losses)
    if losses and log_axis_fits([surface.shown[q] for q in losses], cfg):
        ax.set_yscale("log")
    ax.set_ylabel("loss" if losses else "metric")
    drawn = [ax]
    if losses and metrics:
        other = ax.twinx()
        plot(other, metrics)
        other.set_ylabel("metric")
        drawn.append(other)
    elif metrics:
        plot(ax, metrics)
    handles = [h for a in drawn for h in a.get_legend_handles_labels()[0]]
    if handles:  # on the top axis, over every curve
        drawn[-1].legend(handles, [h.get_label() for h in handles], fontsize=8, loc="best")
    return drawn


def plot_curve(surface: Surface, file: Path, cfg: PlotConfig) -> Path:
    """1-D slice: every loss on one axis (log when positive), every metric on a second one
    (:func:`draw_curves`)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    draw_curves(ax, surface, cfg)
    _mark_models(ax, surface)
    label_axes(ax, surface)
    losses, metrics = curve_quantities(list(surface.values))
    what = " and ".join((["loss" if len(losses) == 1 else "losses"] if losses else [])
                        + (["metrics"] if metrics else [])) or surface.loss_name
    ax.set_title(f"{what} along slice '{surface.name}'\n{caption(surface)}",
                 fontsize=9, pad=14 if surface.meta.get("model_coords") else 6)
    return finish(fig, file, cfg.dpi)


def plot_path_loss(surface: Surface, file: Path, cfg: PlotConfig) -> Path:
    """The true loss along the recorded path beside the slice's loss at its projected points."""
    from scipy.interpolate import RegularGridInterpolator

    p = surface.path
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    name = surface.loss_name
    ax.plot(p.step, p.values[name], marker=".", label="true loss at the recorded weights")
    if surface.ndim == 2:
        grid = (surface.ycoordinates, surface.xcoordinates)
        interp = RegularGridInterpolator(grid, surface.shown[name], bounds_error=False)
        on_slice = interp(np.stack([p.coords[:, 1], p.coords[:, 0]], axis=1))
    else:
        on_slice = np.interp(p.coords[:, 0], surface.xcoordinates, surface.shown[name],
                             left=np.nan, right=np.nan)
    ax.plot(p.step, on_slice, marker=".", label="slice loss at the projected point")
    if cfg.log_levels and np.nanmin(p.values[name]) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.set_title(f"path vs slice '{surface.name}' (off-plane fraction of the path "
                 f"{off_plane_fraction(p.residual, p.distance):.2f})", fontsize=9)
    return finish(fig, file, cfg.dpi)


def plot_surface_file(path: Path, out: Path, cfg: PlotConfig, suffix: str | None = None) -> list[str]:
    """Every figure of every slice in a surface file, as ``suffix`` files (default: the
    configured format); returns the written paths."""
    written = []
    suffix = suffix or f".{cfg.format}"
    surfaces = read_surface(path)
    groups: dict = {}
    for surface in surfaces.values():
        if surface.meta.get("seed_group"):
            groups.setdefault(surface.meta["seed_group"], []).append(surface)
    for group, members in groups.items():
        if len(members) > 1 and len({m.ndim for m in members}) == 1:
            kind = "seeds_1d" if members[0].ndim == 1 else "seeds"
            written.append(plot_seeds(members, out / f"{group}_{kind}{suffix}", cfg))
    for name, surface in surfaces.items():
        if surface.ndim == 2:
            written.append(plot_contour(surface, out / f"{name}_contour{suffix}", cfg))
            written.append(plot_contour(surface, out / f"{name}_filled{suffix}", cfg, filled=True))
            written += _per_quantity(surface, out, cfg, suffix)
        else:
            written.append(plot_curve(surface, out / f"{name}_1d{suffix}", cfg))
        if len(surface.datasets) > 1:
            written.append(plot_datasets(surface, out / f"{name}_datasets{suffix}", cfg))
        eigen_maps, _ = figures_apart(surface.values)
        for dataset in surface.datasets:  # '' for one dataset, else each dataset's maps
            prefix = f"{dataset}/" if dataset else ""
            if prefix in eigen_maps:
                from .curvature import plot_eigen_map

                stem = f"{name}_{dataset}" if dataset else name
                written.append(plot_eigen_map(surface, out / f"{stem}_hessian{suffix}", cfg, prefix))
        if surface.curves:
            written.append(plot_along_curves(surface, out / f"{name}_curve_loss{suffix}", cfg))
        if surface.path is not None and surface.loss_name in surface.path.values and draws_path(surface, cfg):
            written.append(plot_path_loss(surface, out / f"{name}_path{suffix}", cfg))
    return [str(p) for p in written]


def _shared_levels(surface: Surface, cfg: PlotConfig) -> dict:
    """Contour levels per quantity, shared by the same quantity on several datasets
    (``train/accuracy`` and ``test/accuracy``), which are comparable."""
    groups: dict = {}
    for name in surface.values:
        groups.setdefault(name.rsplit("/", 1)[-1], []).append(name)
    levels = {}
    for members in groups.values():
        values = np.concatenate([surface.shown[m].ravel() for m in members])
        shared = contour_levels(values, cfg.levels, cfg.log_levels)
        levels.update({m: shared for m in members})
    return levels


def _per_quantity(surface: Surface, out: Path, cfg: PlotConfig, suffix: str) -> list[Path]:
    """For every quantity of a 2-D slice: a 3-D view and a heat map; and filled contours of
    those besides the main loss (the Hessian's pair has a figure of its own)."""
    from .surface3d import plot_heatmap, plot_surface3d

    main, written = surface.loss_name, []
    _, no_contours = figures_apart(surface.values)
    levels = _shared_levels(surface, cfg)
    for quantity in quantities(surface):
        stem = file_stem(surface.name, quantity, main)
        written.append(plot_surface3d(surface, out / f"{stem}_3d{suffix}", cfg, quantity,
                                      draws_path(surface, cfg)))
        written.append(plot_heatmap(surface, out / f"{stem}_heatmap{suffix}", cfg, quantity))
        if quantity != main and quantity not in no_contours:
            written.append(plot_contour(surface, out / f"{stem}_filled{suffix}", cfg, quantity,
                                        filled=True, levels=levels[quantity]))
    return written
