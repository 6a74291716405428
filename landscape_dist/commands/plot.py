"""``plot``: draw every slice of a surface file in the configured output formats."""

from __future__ import annotations

from pathlib import Path

from ..config.schema import Config
from ..config.words import SETTING_WORDS
from ..errors import in_terms
from ..figures.formats import write_outputs
from ..store.lock import writes_into
from ..store.outdir import check_writable
from ..store.surface import check_surface


@writes_into("plot", lambda a: a["out"] if a["out"] is not None
             else Path(a["surface"]).parent)
def plot(surface: str | Path, out: str | Path | None = None, config: Config | None = None,
         formats: tuple[str, ...] | None = None) -> list[str]:
    """Draw every slice of a surface file in each of ``formats`` (default: ``config.plot.format``);
    returns the written paths (next to the surface file by default)."""
    surface = Path(surface)
    out = Path(out) if out is not None else surface.parent
    with in_terms(SETTING_WORDS):
        check_writable(out, create=False)
        check_surface(surface)  # a file that is not a finished surface is refused before writing
        check_writable(out)
    return write_outputs(surface, out, (config or Config()).plot, formats)
