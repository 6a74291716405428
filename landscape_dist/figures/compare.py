"""Figures that set slices side by side: slices that differ only in their random seed, and one
slice evaluated on several datasets with its generalisation gap."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # its backend is chosen in figures/__init__.py
import numpy as np
from matplotlib import colors

from ..config.schema import PlotConfig
from ..store.surface import Surface
from .common import axis_labels, contour_levels, finish, format_colorbar, label_axes, log_axis_fits


def plot_seeds(members: list, file: Path, cfg: PlotConfig) -> Path:
    """Slices that differ only in their random seed: for 1-D slices the curves with their mean
    and spread (Li et al.'s repeated 1-D plots), for 2-D slices small multiples on shared levels."""
    seeds = [m.meta.get("seed") for m in members]
    group = members[0].meta.get("seed_group")
    if members[0].ndim == 1:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        x = members[0].xcoordinates
        curves = np.array([m.shown[m.loss_name] for m in members])
        for seed, curve in zip(seeds, curves):
            ax.plot(x, np.ma.masked_invalid(curve), color="tab:blue", alpha=0.25, linewidth=0.8)
        with np.errstate(all="ignore"):
            mean, std = np.nanmean(curves, axis=0), np.nanstd(curves, axis=0)
            lo, hi = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
        ax.fill_between(x, lo, hi, color="tab:blue", alpha=0.12, label="min to max")
        ax.fill_between(x, mean - std, mean + std, color="tab:blue", alpha=0.25, label="mean ± std")
        ax.plot(x, mean, color="tab:blue", label=f"mean of {len(members)} seeds")
        finite = curves[np.isfinite(curves)]
        if cfg.log_levels and finite.size and finite.min() > 0:
            ax.set_yscale("log")
        ax.set_xlabel(axis_labels(members[0])[0])
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
        ax.set_title(f"loss along '{group}' for seeds {seeds}", fontsize=9)
        return finish(fig, file, cfg.dpi)
    cols = min(len(members), 3)
    rows = -(-len(members) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 1.2, 3.2 * rows), squeeze=False,
                             constrained_layout=True)
    values = np.concatenate([m.shown[m.loss_name].ravel() for m in members])
    levels = contour_levels(values, cfg.levels, cfg.log_levels)
    norm = colors.LogNorm(levels[0], levels[-1]) if cfg.log_levels and levels[0] > 0 else None
    cs = None
    for ax, member, seed in zip(axes.ravel(), members, seeds):
        z = np.ma.masked_invalid(member.shown[member.loss_name])
        if z.count():
            X, Y = np.meshgrid(member.xcoordinates, member.ycoordinates)
            cs = ax.contourf(X, Y, z, levels=levels, norm=norm, cmap="viridis")
        ax.plot(0, 0, marker="+", color="red", markersize=8)
        ax.set_title(f"seed {seed}", fontsize=9)
    for ax in axes.ravel()[len(members):]:
        ax.set_visible(False)
    if cs is not None:
        format_colorbar(fig.colorbar(cs, ax=axes.ravel().tolist(), label="loss (shared levels)"))
    fig.suptitle(f"slice '{group}' for {len(members)} seeds", fontsize=10)
    fig.savefig(file, dpi=cfg.dpi)
    plt.close(fig)
    return file


def plot_datasets(surface: Surface, file: Path, cfg: PlotConfig) -> Path:
    """A slice evaluated on several datasets: each one's loss side by side on shared levels, and
    the generalisation gap (the second dataset's loss minus the first's)."""
    datasets = surface.datasets
    losses = [surface.shown[f"{d}/loss"] for d in datasets]
    gap = losses[1] - losses[0]
    gap_label = f"{datasets[1]} loss - {datasets[0]} loss"
    if surface.ndim == 1:  # the losses on one axis, the gap below on its own
        fig, (ax, below) = plt.subplots(2, 1, figsize=(6.4, 5.2), sharex=True,
                                        gridspec_kw={"height_ratios": (2, 1)})
        for d, loss in zip(datasets, losses):
            ax.plot(surface.xcoordinates, np.ma.masked_invalid(loss), label=f"{d} loss")
        if log_axis_fits(losses, cfg):
            ax.set_yscale("log")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8, loc="best")
        below.plot(surface.xcoordinates, np.ma.masked_invalid(gap), color="tab:red",
                   label=f"gap: {gap_label}")
        below.axhline(0.0, color="grey", linewidth=0.6)
        below.set_ylabel("loss gap")
        below.legend(fontsize=8, loc="best")
        label_axes(below, surface)
        ax.set_title(f"datasets on slice '{surface.name}'", fontsize=9)
        return finish(fig, file, cfg.dpi)
    panels = len(datasets) + 1
    fig, axes = plt.subplots(1, panels, figsize=(3.8 * panels + 1.0, 3.6), constrained_layout=True)
    X, Y = np.meshgrid(surface.xcoordinates, surface.ycoordinates)
    levels = contour_levels(np.concatenate([v.ravel() for v in losses]), cfg.levels, cfg.log_levels)
    norm = colors.LogNorm(levels[0], levels[-1]) if cfg.log_levels and levels[0] > 0 else None
    cs = None
    for ax, d, loss in zip(axes, datasets, losses):
        z = np.ma.masked_invalid(loss)
        if z.count():
            cs = ax.contourf(X, Y, z, levels=levels, norm=norm, cmap="viridis")
        ax.set_title(f"{d} loss", fontsize=9)
    if cs is not None:
        format_colorbar(fig.colorbar(cs, ax=list(axes[:-1]), label="loss (shared levels)"))
    z = np.ma.masked_invalid(gap)
    if z.count():
        bound = float(np.max(np.abs(z.compressed()))) or 1.0
        gs = axes[-1].contourf(X, Y, z, levels=np.linspace(-bound, bound, 21), cmap="RdBu_r")
        format_colorbar(fig.colorbar(gs, ax=axes[-1], label=gap_label))
    axes[-1].set_title("generalisation gap", fontsize=9)
    for ax in axes:
        ax.plot(0, 0, marker="+", color="black", markersize=8)
    fig.suptitle(f"slice '{surface.name}' on {', '.join(datasets)}", fontsize=10)
    fig.savefig(file, dpi=cfg.dpi)
    plt.close(fig)
    return file
