"""The live preview: a quick picture of a grid still being filled, drawn while a sweep runs.

The gaps between the done points are interpolated for the picture only; nothing of it is stored.
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # its backend is chosen in figures/__init__.py
import numpy as np
from matplotlib import colors

from .common import format_colorbar
from .static import contour_levels


def plot_preview(values: np.ndarray, xs, ys, file, title: str, quantity: str = "loss") -> str:
    """A quick picture of a grid still being filled: the gaps between the done points filled by
    linear interpolation (nearest done point outside their hull), diverged points masked, the
    fraction done in the title."""
    from scipy.interpolate import griddata

    done = ~np.isnan(values)
    fraction = done.mean()
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    if ys is None or len(ys) == 1:
        ax.plot(xs, np.ma.masked_invalid(values[0]), marker=".")
        ax.set_xlabel("direction 0")
        ax.set_ylabel(quantity)
    else:
        X, Y = np.meshgrid(xs, ys)
        known = done & np.isfinite(values)
        z = values.copy()
        if known.sum() >= 4:
            pts = np.stack([X[known], Y[known]], axis=1)
            z = griddata(pts, values[known], (X, Y), method="nearest")
            try:  # smoother inside the done points' hull; nearest outside it
                linear = griddata(pts, values[known], (X, Y), method="linear")
                z = np.where(np.isnan(linear), z, linear)
            except (ValueError, RuntimeError):  # collinear points: no triangulation
                pass
            z[done & ~np.isfinite(values)] = np.nan  # diverged points stay masked
        z = np.ma.masked_invalid(z)
        if z.count() >= 4 and np.ptp(z.compressed()) > 0:
            levels = contour_levels(z.filled(np.nan), 20)
            norm = colors.LogNorm(levels[0], levels[-1]) if levels[0] > 0 else None
            cs = ax.contourf(X, Y, z, levels=levels, norm=norm, cmap="viridis")
            format_colorbar(fig.colorbar(cs, ax=ax, label=quantity))
        if fraction < 1:  # where the values come from, while the sweep runs
            ax.scatter(X[done], Y[done], s=2, color="white", alpha=0.5)
        ax.set_xlabel("direction 0")
        ax.set_ylabel("direction 1")
    ax.set_title(f"{title}: {100 * fraction:.0f}% of the points done", fontsize=9)
    fig.tight_layout()
    fig.savefig(file, dpi=90)
    plt.close(fig)
    return str(file)
