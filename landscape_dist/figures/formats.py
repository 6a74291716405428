"""Output formats (``plot.format``): each a writer registered under its configuration name.

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


def write_outputs(surface_file, out, cfg, formats: tuple[str, ...] | None = None) -> list[str]:
    """Write every format in ``formats`` (default: ``cfg.format``); returns the written paths."""
    written = []
    for name in formats or (cfg.format,):
        written += OUTPUT_FORMATS[name](Path(surface_file), Path(out), cfg)
    return written
