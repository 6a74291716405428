"""Figures of curvature: the spectral density at the centre, and eigenvalue maps over a slice."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # its backend is chosen in figures/__init__.py
import numpy as np

from ..config.schema import PlotConfig
from .common import axis_labels, figures_apart, format_colorbar


def plot_density(result: dict, file: Path, dpi: int = 120) -> Path:
    """The spectral density by stochastic Lanczos quadrature (log scale), with the top and the
    smallest eigenvalues found by Lanczos marked."""
    nodes, weights, grid, density, sigma = result["density"]
    eigen = result["eigen"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.semilogy(grid, np.maximum(density, 1e-12), color="tab:blue", linewidth=1.2)
    for i, value in enumerate(eigen.top_values):
        ax.axvline(value, color="tab:red", linestyle=":", linewidth=0.9,
                   label="top eigenvalues" if i == 0 else None)
    ax.axvline(eigen.min_value, color="tab:green", linestyle="--", linewidth=0.9,
               label="smallest eigenvalue")
    estimate, stderr, _ = result["trace"]
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_ylim(bottom=max(1e-8, float(np.max(density)) * 1e-7))
    ax.legend(fontsize=8)
    ax.set_title(f"Hessian spectral density at the centre (SLQ, {nodes.shape[0]} vectors x "
                 f"{nodes.shape[1]} steps, width {sigma:.3g})\n"
                 f"top {eigen.top_values[0]:.4g}, min {eigen.min_value:.4g}, "
                 f"trace {estimate:.4g} +- {stderr:.2g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(file, dpi=dpi)
    plt.close(fig)
    return file


def eigen_ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """|min / max| where the largest eigenvalue is positive (NaN elsewhere): near 0 where the
    surface is locally convex, large where negative curvature dominates (Li et al., Fig. 6)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(top > 0, np.abs(bottom / top), np.nan)


def plot_eigen_map(surface, file: Path, cfg: PlotConfig, prefix: str = "") -> Path:
    """The largest and the smallest Hessian eigenvalue over a slice, and the ratio |min/max|;
    ``prefix``: ``<dataset>/`` for one of several datasets."""
    top_name, bottom_name = figures_apart(surface.values)[0][prefix]
    top, bottom = surface.shown[top_name], surface.shown[bottom_name]
    labels = axis_labels(surface, short=True)
    ratio = eigen_ratio(top, bottom)
    panels = (("largest eigenvalue", top, "magma"), ("smallest eigenvalue", bottom, "RdBu_r"),
              ("|min / max|", ratio, "viridis"))
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.0), constrained_layout=True)
    if surface.ndim == 1:
        for ax, (title, z, _) in zip(axes, panels):
            ax.plot(surface.xcoordinates, np.ma.masked_invalid(z))
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(labels[0])
    else:
        X, Y = np.meshgrid(surface.xcoordinates, surface.ycoordinates)
        for ax, (title, z, cmap) in zip(axes, panels):
            z = np.ma.masked_invalid(z)
            if z.count():
                if cmap == "RdBu_r":  # zero in the middle: the sign is what matters
                    bound = float(np.max(np.abs(z.compressed()))) or 1.0
                    levels = np.linspace(-bound, bound, 21)
                else:
                    lo, hi = float(z.min()), float(z.max())
                    levels = np.linspace(lo, hi if hi > lo else lo + 1.0, 21)
                cs = ax.contourf(X, Y, z, levels=levels, cmap=cmap)
                format_colorbar(fig.colorbar(cs, ax=ax))
            ax.plot(0, 0, marker="+", color="black", markersize=8)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
    on = f" on {prefix[:-1]}" if prefix else ""
    fig.suptitle(f"Hessian eigenvalues{on} on slice '{surface.name}' (Lanczos at every point)",
                 fontsize=10)
    fig.savefig(file, dpi=cfg.dpi)
    plt.close(fig)
    return file
