"""Animations: the training path travelling over a slice's contours (GIF by Pillow, MP4 by ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # its backend is chosen in figures/__init__.py
import numpy as np
from matplotlib import animation, colors

from ..errors import OutputError


def frame_positions(n_checkpoints: int, frames: int) -> np.ndarray:
    """Where along the path (a fractional checkpoint index, 0 to n-1) each frame stands."""
    return np.linspace(0.0, n_checkpoints - 1, frames)


def animate_path(surface, file: Path, cfg, writer: str = "pillow") -> Path:
    """``cfg.animation_frames`` frames over ``cfg.animation_seconds``: the filled contours of the
    slice's main loss, the path drawn up to the frame's point (between checkpoints, linearly),
    the title giving its epoch and true loss."""
    from .common import format_colorbar
    from .static import contour_levels, label_axes

    if writer == "ffmpeg" and not animation.writers.is_available("ffmpeg"):
        raise OutputError("The output format 'mp4' needs ffmpeg, which is not installed here. "
                          "Install ffmpeg, or use the 'gif' format.")
    path = surface.path
    keep = np.all(np.isfinite(path.coords[:, :2]), axis=1)
    coords, epochs = path.coords[keep, :2], np.asarray(path.epoch, dtype=np.float64)[keep]
    true = np.asarray(path.values.get(surface.loss_name, np.full(len(path.coords), np.nan)))[keep]
    name = surface.loss_name
    levels = contour_levels(surface.shown[name], cfg.levels, cfg.log_levels)
    norm = colors.LogNorm(levels[0], levels[-1]) if cfg.log_levels and levels[0] > 0 else None
    X, Y = np.meshgrid(surface.xcoordinates, surface.ycoordinates)
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    z = np.ma.masked_invalid(surface.shown[name])
    if z.count():
        cs = ax.contourf(X, Y, z, levels=levels, norm=norm, cmap="viridis")
        format_colorbar(fig.colorbar(cs, ax=ax, label=name))
    label_axes(ax, surface)
    ax.plot(coords[:, 0], coords[:, 1], color="white", alpha=0.3, linewidth=1)
    (trail,) = ax.plot([], [], color="tab:red", linewidth=1.8)
    (head,) = ax.plot([], [], marker="o", color="tab:red", markeredgecolor="white", markersize=8)
    title = ax.set_title("", fontsize=9)
    positions = frame_positions(len(coords), cfg.animation_frames)

    def draw(frame):
        t = positions[frame]
        i, frac = int(np.floor(t)), t - np.floor(t)
        j = min(i + 1, len(coords) - 1)
        point = coords[i] + frac * (coords[j] - coords[i])
        shown = np.vstack([coords[:i + 1], point])
        trail.set_data(shown[:, 0], shown[:, 1])
        head.set_data([point[0]], [point[1]])
        epoch = epochs[i] + frac * (epochs[j] - epochs[i])
        loss = true[i] + frac * (true[j] - true[i])
        title.set_text(f"slice '{surface.name}': epoch {epoch:.1f}, true {name} {loss:.4g} "
                       f"(between checkpoints: interpolated)")
        return trail, head, title

    fps = cfg.animation_frames / cfg.animation_seconds
    if writer == "ffmpeg":
        movie = animation.FuncAnimation(fig, draw, frames=cfg.animation_frames, blit=False)
        movie.save(file, writer=animation.FFMpegWriter(fps=fps), dpi=cfg.dpi)
    else:
        _save_gif(fig, (trail, head, title), draw, cfg.animation_frames, fps, file,
                  dpi=min(cfg.dpi, 100))
    plt.close(fig)
    return Path(file)


def _save_gif(fig, moving, draw, frames: int, fps: float, file: Path, dpi: float) -> None:
    """The frames as a looping GIF: the still part of the figure is drawn once and each frame
    draws only the ``moving`` artists over a copy of it (ten times faster than redrawing the
    contours per frame)."""
    from PIL import Image

    fig.set_dpi(dpi)
    canvas = fig.canvas
    for artist in moving:
        artist.set_visible(False)
    canvas.draw()
    still = canvas.copy_from_bbox(fig.bbox)
    for artist in moving:
        artist.set_visible(True)
    images = []
    for frame in range(frames):
        draw(frame)
        canvas.restore_region(still)
        for artist in moving:
            fig.draw_artist(artist)
        width, height = canvas.get_width_height()
        rgb = Image.frombuffer("RGBA", (width, height), bytes(canvas.buffer_rgba())).convert("RGB")
        images.append(rgb.quantize(colors=256))
    images[0].save(file, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(round(1000 / fps)), loop=0)


def write_animations(surface_file: Path, out: Path, cfg, suffix: str) -> list[str]:
    """A ``<slice>_path<suffix>`` animation for each 2-D slice with a path of 2 or more finite
    checkpoints drawn on it (``plot.show_path``)."""
    from ..store.surface import read_surface
    from .static import draws_path

    written = []
    for name, surface in read_surface(surface_file).items():
        path = surface.path
        if (surface.ndim != 2 or path is None or not draws_path(surface, cfg)
                or np.sum(np.all(np.isfinite(path.coords[:, :2]), axis=1)) < 2):
            continue
        writer = "ffmpeg" if suffix == ".mp4" else "pillow"
        written.append(str(animate_path(surface, out / f"{name}_path{suffix}", cfg, writer)))
    return written
