"""Output formats (``plot.format``, ``plot.formats``): each a writer registered under its configuration name.

A writer is ``writer(surface_file, out_dir, plot_config) -> list of written paths``. A new format
is one function registered here (or in its own module imported below), and its tests. This module
imports no plotting library: writers import theirs when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..registry import Registry

Writer = Callable[[Path, Path, object], list]
OUTPUT_FORMATS: Registry[Writer] = Registry("output format")


def _static(suffix: str) -> Writer:
    def write(surface_file: Path, out: Path, cfg) -> list[str]:
        """Contour, filled-contour and path figures (2-D slices) or curves (1-D), matplotlib."""
        from .static import plot_surface_file

        return plot_surface_file(Path(surface_file), Path(out), cfg, suffix)
    write.__name__ = f"write_{suffix.lstrip('.')}"
    return write


for _name in ("png", "pdf", "svg"):
    OUTPUT_FORMATS.register(_name)(_static(f".{_name}"))


@OUTPUT_FORMATS.register("vtp")
def write_vtp(surface_file: Path, out: Path, cfg) -> list[str]:
    """ParaView meshes, one per 2-D slice and quantity, with the path as a polyline."""
    from .vtk import write_surface_vtp

    return write_surface_vtp(Path(surface_file), Path(out), cfg)


@OUTPUT_FORMATS.register("html")
def write_html(surface_file: Path, out: Path, cfg) -> list[str]:
    """One self-contained interactive page of every slice (``landscape.html``)."""
    from .html import write_page

    return [str(write_page(Path(surface_file), Path(out) / "landscape.html", cfg))]


@OUTPUT_FORMATS.register("gif")
def write_gif(surface_file: Path, out: Path, cfg) -> list[str]:
    """The training path travelling over each slice that draws it (Pillow)."""
    from .animation import write_animations

    return write_animations(Path(surface_file), Path(out), cfg, ".gif")


@OUTPUT_FORMATS.register("mp4")
def write_mp4(surface_file: Path, out: Path, cfg) -> list[str]:
    """The same animation as an MP4 video (needs ffmpeg)."""
    from .animation import write_animations

    return write_animations(Path(surface_file), Path(out), cfg, ".mp4")


def write_outputs(surface_file, out, cfg, formats: tuple[str, ...] | None = None) -> list[str]:
    """Write every format in ``formats`` (default: ``cfg.all_formats``); returns the written
    paths."""
    written = []
    for name in formats or cfg.all_formats:
        written += OUTPUT_FORMATS[name](Path(surface_file), Path(out), cfg)
    return written
