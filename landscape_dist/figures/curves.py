"""Figures of the curves evaluated beside a slice's grid (``kind: curve``): the loss along t on
the curve and on the straight line (their Figure 1, left, as a function of t), and the curves
drawn on the plane's contours (their Figure 1, right)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # its backend is chosen in figures/__init__.py
import numpy as np

from ..config.schema import PlotConfig
from .common import curve_label, finish, log_axis_fits

# how each curve is drawn, on the plane and along t; others in the default style
STYLES = {"curve": {"color": "tab:orange", "linestyle": "-"},
          "line": {"color": "black", "linestyle": ":"}}


def _losses(surface) -> list[str]:
    """The curves' losses: every dataset's ('train/loss', 'test/loss'), or 'loss'."""
    names = next(iter(surface.curves.values())).values
    return [q for q in names if q == "loss" or q.endswith("/loss")]


def overlay_curves(ax, surface) -> None:
    """The slice's curves drawn on its plane (``ax`` with the plane's coordinates), each with
    its barrier on the main loss in the legend."""
    if not surface.curves:
        return
    for name, curve in surface.curves.items():
        height = (curve.meta.get("barrier") or {}).get(surface.loss_name)
        label = name if height is None else f"{name} (barrier {height:.3g})"
        ax.plot(curve.coords[:, 0], curve.coords[:, 1], linewidth=1.8, zorder=5, label=label,
                **STYLES.get(name, {}))
    ax.legend(fontsize=8, loc="best")


def plot_along_curves(surface, file: Path, cfg: PlotConfig) -> Path:
    """The loss along t of every curve of the slice (the trained curve solid, the straight line
    dotted), one colour per dataset, on a log axis where the losses allow; barriers in the
    legend."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    losses = _losses(surface)
    several = len(losses) > 1
    for name, curve in surface.curves.items():
        style = dict(STYLES.get(name, {}))
        for i, q in enumerate(losses):
            if several:  # a colour per dataset, a line style per curve
                style["color"] = f"C{i}"
            height = (curve.meta.get("barrier") or {}).get(q)
            label = f"{name}, {curve_label(q)}" + ("" if height is None else
                                                    f" (barrier {height:.3g})")
            ax.plot(curve.t, np.ma.masked_invalid(curve.values[q]), marker=".", label=label,
                    **style)
    values = [c.values[q] for c in surface.curves.values() for q in losses]
    if log_axis_fits(values, cfg):
        ax.set_yscale("log")
    ax.set_xlabel("t (0: A, 1: B)")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8, loc="best")
    bend = surface.meta.get("bend", "")
    ax.set_title(f"loss along the {bend} curve and the line, slice '{surface.name}'\n"
                 f"bend: {Path(str((surface.meta.get('bend_training') or {}).get('file'))).name}",
                 fontsize=9)
    return finish(fig, file, cfg.dpi)
