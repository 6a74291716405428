"""Output formats (``plot.format``, ``plot.formats``): the built-in writers, each listed in
:data:`~landscape_dist.registry.OUTPUT_FORMATS` under its configuration name.

A writer is ``writer(surface_file, out_dir, plot_config) -> list of written paths``; a format with
settings of its own is an :class:`~landscape_dist.registry.OutputFormat` (its writer then also
gets its settings, ``plot.options.<name>``). A new built-in
format is one function (here or in a module of its own) and one line in the registry's table; one
from outside the package registers itself with ``OUTPUT_FORMATS.register(name)``. This module
imports no plotting library: writers import theirs when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..registry import OUTPUT_FORMATS, OutputFormat

Writer = Callable[[Path, Path, object], list]


def _static(suffix: str) -> Writer:
    def write(surface_file: Path, out: Path, cfg) -> list[str]:
        """Contour, filled-contour and path figures (2-D slices) or curves (1-D), matplotlib."""
        from .static import plot_surface_file

        return plot_surface_file(Path(surface_file), Path(out), cfg, suffix)
    write.__name__ = write.__qualname__ = f"write_{suffix.lstrip('.')}"
    return write


write_png, write_pdf, write_svg = (_static(f".{name}") for name in ("png", "pdf", "svg"))


def write_vtp(surface_file: Path, out: Path, cfg) -> list[str]:
    """ParaView meshes, one per 2-D slice and quantity, with the path as a polyline."""
    from .vtk import write_surface_vtp

    return write_surface_vtp(Path(surface_file), Path(out), cfg)


def write_html(surface_file: Path, out: Path, cfg) -> list[str]:
    """One self-contained interactive page of every slice (``landscape.html``)."""
    from .html import write_page

    return [str(write_page(Path(surface_file), Path(out) / "landscape.html", cfg))]


def write_gif(surface_file: Path, out: Path, cfg) -> list[str]:
    """The training path travelling over each slice that draws it (Pillow)."""
    from .animation import write_animations

    return write_animations(Path(surface_file), Path(out), cfg, ".gif")


def write_mp4(surface_file: Path, out: Path, cfg) -> list[str]:
    """The same animation as an MP4 video (needs ffmpeg)."""
    from .animation import write_animations

    return write_animations(Path(surface_file), Path(out), cfg, ".mp4")


def write_tensorboard(surface_file: Path, out: Path, cfg) -> list[str]:
    """TensorBoard logs, one run per slice under ``tensorboard/``: the figures as images, each
    2-D slice's surface as a mesh, the path's true loss and metrics as scalars, the config as
    text (needs the tensorboard package)."""
    from .tensorboard import write_tensorboard_logs

    return write_tensorboard_logs(Path(surface_file), Path(out), cfg)


def write_outputs(surface_file, out, cfg, formats: tuple[str, ...] | None = None) -> list[str]:
    """Write every format in ``formats`` (default: ``cfg.all_formats``); returns the written
    paths."""
    written = []
    for name in formats or cfg.all_formats:
        entry = OUTPUT_FORMATS[name]
        if isinstance(entry, OutputFormat):  # a format with settings of its own gets them
            written += entry.write(Path(surface_file), Path(out), cfg, cfg.settings_of(name))
        else:
            written += entry(Path(surface_file), Path(out), cfg)
    return written
