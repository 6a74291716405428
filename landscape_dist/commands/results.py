"""What :func:`~landscape_dist.commands.landscape.landscape` returns: every slice in memory, the
numbers derived from each, figures as matplotlib Figures and the interactive view in a notebook.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.schema import Config
from ..store.surface import Surface, read_surface

__all__ = ["Landscape", "KINDS"]

HTML_POINTS = 101  # points per axis of a slice in the notebook's view (the slice keeps all)
_PLOTLY_SHOWN = False  # whether a view in this session has brought plotly.js already
# figure kind -> the slices it is drawn for (by their number of dimensions)
KINDS = {"contour": (2,), "filled": (2,), "3d": (2,), "heatmap": (2,), "path": (1, 2),
         "curve": (1,)}


@dataclass(frozen=True)
class Landscape:
    """The loss landscape of a model: each slice as a :class:`Surface` (values as NumPy arrays
    with their coordinates), by name in the order swept.

    ``numbers``: what the summary holds per slice (loss at the centre, the local quadratic and
    its eigenvalues, basin widths). ``summary``: what the sweep reported (points, seconds,
    points/s...). ``out``: the directory holding the files, or None when none were kept.
    """

    slices: dict
    config: Config
    summary: dict
    out: Path | None

    @classmethod
    def read(cls, surface_file: Path, config: Config, summary: dict,
             out: Path | None) -> "Landscape":
        """The landscape in ``surface_file``, read into memory."""
        return cls(read_surface(surface_file), config, summary, out)

    @property
    def numbers(self) -> dict:
        """The numbers derived from each slice, by slice name (see the summary's ``numbers``)."""
        return {name: surface.meta.get("numbers", {}) for name, surface in self.slices.items()}

    def __getitem__(self, name: str) -> Surface:
        return self.slices[self._slice_name(name)]

    def __iter__(self):
        return iter(self.slices)

    def __len__(self) -> int:
        return len(self.slices)

    def __repr__(self) -> str:
        parts = []
        for name, s in self.slices.items():
            shape = "x".join(str(n) for n in s.values[s.loss_name].shape[::-1])
            parts.append(f"'{name}' ({shape}, {s.meta.get('kind', '?')})")
        where = f", files in '{self.out}'" if self.out else ""
        return f"Landscape({', '.join(parts)}{where})"

    def _slice_name(self, name: str | None) -> str:
        if name is None:
            return next(iter(self.slices))
        if name not in self.slices:
            raise KeyError(f"The 'slice' parameter must name a slice of this landscape, one of "
                           f"{list(self.slices)}. Got {name!r} instead.")
        return name

    def plot(self, kind: str = "contour", slice: str | None = None,  # noqa: A002 - Keras-like
             quantity: str | None = None):
        """A figure of one slice (default: the first) as the command line draws it:
        ``contour``, ``filled``, ``3d``, ``heatmap`` (2-D slices), ``curve`` (1-D slices) or
        ``path`` (the loss along the recorded path beside the slice's); ``quantity`` (default:
        the loss) for the kinds that draw one. Returns a ``matplotlib.figure.Figure`` that shows
        itself in a notebook."""
        name = self._slice_name(slice)
        surface = self.slices[name]
        if kind not in KINDS:
            raise ValueError(f"The 'kind' parameter must be one of {list(KINDS)}. Got {kind!r} "
                             f"instead.")
        if surface.ndim not in KINDS[kind]:
            fits = [k for k, dims in KINDS.items() if surface.ndim in dims]
            raise ValueError(f"The 'kind' parameter is {kind!r}, which slice '{name}' "
                             f"({surface.ndim}-D) has no figure of. Use one of {fits}.")
        if quantity is not None and quantity not in surface.values:
            raise ValueError(f"The 'quantity' parameter must be one of slice '{name}''s "
                             f"{list(surface.values)}. Got {quantity!r} instead.")
        if kind == "path" and surface.path is None:
            raise ValueError(f"The 'kind' parameter is 'path', but slice '{name}' has no "
                             f"recorded path. Give path=recorder to landscape().")
        return _draw(kind, surface, self.config.plot, quantity)

    def _repr_html_(self) -> str:
        """The interactive page's view of every slice (see ``figures.html``), each grid shown
        at most ``HTML_POINTS`` per axis so that a notebook stays light. plotly.js (4.8 MB) comes
        with the first view this Python session shows, as plotly's own notebook mode does, and
        later views use it (after a reload, show ``html(full=True)`` if that first output was
        cleared)."""
        global _PLOTLY_SHOWN
        view = self.html(full=not _PLOTLY_SHOWN)
        _PLOTLY_SHOWN = True
        return view

    def html(self, full: bool = True) -> str:
        """The view :meth:`_repr_html_` shows; ``full``: with plotly.js, so that it draws on its
        own (in a file, another page)."""
        from ..figures.html import page_html

        return page_html(self.slices, self.config.plot, max_points=HTML_POINTS, embed_plotly=full)


def _draw(kind: str, surface: Surface, cfg, quantity: str | None):
    """The command line's figure ``kind`` of ``surface``, as a ``matplotlib.figure.Figure`` (the
    same drawing functions, given no file to write)."""
    from ..figures import static, surface3d

    quantity = quantity or surface.loss_name
    if kind in ("contour", "filled"):
        return static.plot_contour(surface, None, cfg, quantity, filled=kind == "filled")
    if kind == "3d":
        return surface3d.plot_surface3d(surface, None, cfg, quantity,
                                        static.draws_path(surface, cfg))
    if kind == "heatmap":
        return surface3d.plot_heatmap(surface, None, cfg, quantity)
    if kind == "curve":
        return static.plot_curve(surface, None, cfg)
    return static.plot_path_loss(surface, None, cfg)
