"""The interactive page: one self-contained HTML file for a whole surface file (plotly).

Each 2-D slice gets a 3-D surface and a contour map side by side, with a selector of the quantity
shown (loss, metrics, datasets, eigenvalues) and the path, whose points give on hover their
step, epoch, the slice's value under them (interpolated between grid points) and their true value.
A 1-D slice is a curve per quantity: the losses on one axis, the metrics on another. Each slice's
grid is shown at most ``max_points`` per axis (strided, first and last rows and columns kept; the
caption says "shown at 201 x 201 of 1001 x 1001 points"), so that a page of any slice stays a
few MB; the surface file keeps every point. Colour bars are ticked at round values of the
quantity. The run's settings are at the end. plotly.js is embedded once, so the page opens
without a network; a status line says how many plots were drawn, or the first script error.
:func:`page_html` returns the page as a string (a notebook shows it, at ``NOTEBOOK_POINTS``);
:func:`write_page` writes it to a file.
"""

from __future__ import annotations

import html
import itertools
import json
from pathlib import Path

import numpy as np

from .common import (axis_labels, curve_label, curve_quantities, decimated, heights,
                     log_axis_fits, on_slice, quantities, round_ticks, shown_at, tick_text)

_STATUS_SCRIPT = """
<script>
(function () {
  // this page's own status line and plots, also where the page sits in a notebook's output
  var page = document.currentScript ? document.currentScript.closest(".landscape-page") : null;
  var status = page ? page.querySelector("#status") : document.getElementById("status");
  window.addEventListener("error", function (event) {
    status.textContent = "error: " + event.message;
    status.className = "error";
  });
  function count() {
    if (status.className === "error") return;
    var plots = (page || document).querySelectorAll(".js-plotly-plot").length;
    status.textContent = plots + " plots drawn";
    status.dataset.plots = plots;
  }
  if (document.readyState === "complete") setTimeout(count, 0);
  else window.addEventListener("load", count);
})();
</script>
"""

_STYLE = """
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
.row { display: flex; flex-wrap: wrap; gap: 1em; }
.caption { color: #555; font-size: 0.9em; }
#status { font-size: 0.85em; color: #2a7; }
#status.error { color: #c22; }
pre { background: #f6f6f6; padding: 1em; font-size: 0.8em; overflow-x: auto; }
</style>
"""


_PAGES = itertools.count(1)
PAGE_POINTS = 201
"""Points per axis a slice is shown at, at most, on the written page."""
NOTEBOOK_POINTS = 101
"""... and in a notebook's output (:func:`page_html` with ``max_points=NOTEBOOK_POINTS``)."""


def _nan_to_none(values: np.ndarray) -> list:
    """An array as nested lists with NaN as None (plotly leaves a gap)."""
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(arr), arr, None).tolist()


def _grid(values: np.ndarray) -> np.ndarray:
    """A grid's values as the page holds them: float32 (binary in the page, a quarter of the
    size of decimal text), NaN and infinities as NaN (plotly leaves a gap)."""
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(arr), arr, np.nan).astype(np.float32)


def _colours(values: np.ndarray, cfg) -> tuple[np.ndarray, dict, str]:
    """The values as coloured: log10 where they are all positive and ``plot.log_levels`` is on
    (as the contour figures), else as they are; their colour bar's ticks, at round values of
    the quantity itself (1, 2, 5 x 10^k on the log scale); and the scale's prefix ('log10 ')."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    log = bool(cfg.log_levels and finite.size and finite.min() > 0)
    if not finite.size:
        return values, {}, ""
    ticks = round_ticks(float(finite.min()), float(finite.max()), log=log)
    bar = dict(tickvals=(np.log10(ticks) if log else ticks).tolist(),
               ticktext=[tick_text(t) for t in ticks]) if len(ticks) else {}
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log10(values), bar, "log10 "
    return values, bar, ""


def _path_traces(surface, quantity: str, cfg, three_d: bool) -> list:
    """The path's trace (3-D or on the contour), hover text with step, epoch, slice and true
    values of ``quantity``."""
    import plotly.graph_objects as go

    path = surface.path
    if path is None or path.coords.shape[1] < 2:
        return []
    keep = np.all(np.isfinite(path.coords[:, :2]), axis=1)
    c = path.coords[keep, :2]
    true = np.asarray(path.values.get(quantity, np.full(len(path.coords), np.nan)))[keep]
    slice_values = on_slice(surface, quantity, c)
    custom = np.column_stack([np.asarray(path.step)[keep], np.asarray(path.epoch)[keep],
                              slice_values, true])
    hover = ("step %{customdata[0]:.0f}, epoch %{customdata[1]:.2f}<br>"
             f"slice {quantity} %{{customdata[2]:.5g}} (interpolated)<br>"
             f"true {quantity} %{{customdata[3]:.5g}}<extra>path</extra>")
    common = dict(mode="lines+markers", name="path", customdata=_nan_to_none(custom),
                  hovertemplate=hover, marker=dict(size=3, color="red"),
                  line=dict(color="red", width=3))
    if three_d:
        z, _ = heights(true, cfg)
        return [go.Scatter3d(x=c[:, 0], y=c[:, 1], z=_nan_to_none(z), **common)]
    return [go.Scatter(x=c[:, 0], y=c[:, 1], **common)]


def _curves_figure(shown, cfg):
    """A 1-D slice's curves: the losses on the left axis (log when positive), the metrics on
    the right one, each named by dataset and quantity."""
    import plotly.graph_objects as go

    from plotly.colors import DEFAULT_PLOTLY_COLORS as palette

    losses, metrics = curve_quantities(list(shown.values))
    datasets, x = shown.datasets, shown.xcoordinates
    on_right = bool(losses)

    def colour(q: str) -> str:  # a colour per dataset where there are several
        dataset = q.rpartition("/")[0]
        i = datasets.index(dataset) if len(datasets) > 1 and dataset in datasets else \
            (losses + metrics).index(q)
        return palette[i % len(palette)]

    fig = go.Figure()
    for q in losses:
        fig.add_trace(go.Scatter(x=x, y=_grid(shown.shown[q]), name=curve_label(q), mode="lines",
                                 line=dict(color=colour(q))))
    for q in metrics:
        fig.add_trace(go.Scatter(x=x, y=_grid(shown.shown[q]), name=curve_label(q), mode="lines",
                                 line=dict(dash="dash", color=colour(q)),
                                 yaxis="y2" if on_right else "y"))
    log = bool(losses) and log_axis_fits([shown.shown[q] for q in losses], cfg)
    fig.update_layout(height=420, title=f"slice '{shown.name}'",
                      xaxis_title=axis_labels(shown, short=True)[0],
                      yaxis=dict(title="loss" if losses else "metric",
                                 type="log" if log else "linear"),
                      legend=dict(x=1.08, xanchor="left"))
    if on_right and metrics:
        fig.update_layout(yaxis2=dict(title="metric", overlaying="y", side="right",
                                      tickmode="auto", showgrid=False))
    return fig


def slice_figure(surface, cfg, max_points: int | None = None):
    """The plotly figure of one slice: 3-D surface and contours (2-D) or curves (1-D), with a
    quantity selector; its grid shown at most ``max_points`` per axis (:func:`decimated`; the
    path and its values under the path stay whole), all of it with None."""
    return _figure(surface if max_points is None else decimated(surface, max_points), surface, cfg)


def _figure(shown, whole, cfg):
    """The figure of slice ``whole`` with its grid as ``shown`` (decimated or whole)."""
    return _curves_figure(shown, cfg) if whole.ndim == 1 else _surface_figure(shown, whole, cfg)


def _quantity_traces(shown, whole, q: str, cfg, show_path: bool, visible: bool) -> list:
    """The traces of quantity ``q``: the 3-D surface (heights and colours of the shown grid),
    the contours and, with the path, its 3-D and flat traces (values under it from the whole
    grid)."""
    import plotly.graph_objects as go

    z, _ = heights(shown.shown[q], cfg)
    colour, ticks, prefix = _colours(shown.shown[q], cfg)
    colour = _grid(colour)
    traces = [
        go.Surface(x=shown.xcoordinates, y=shown.ycoordinates, z=_grid(z),
                   surfacecolor=colour, colorscale="Viridis", visible=visible, name=q,
                   colorbar=dict(title=q, x=0.44, **ticks)),
        go.Contour(x=shown.xcoordinates, y=shown.ycoordinates, z=colour, colorscale="Viridis",
                   ncontours=cfg.levels, visible=visible, name=q,
                   colorbar=dict(title=q, **ticks),
                   hovertemplate=f"x %{{x:.4g}}, y %{{y:.4g}}<br>{prefix}{q} %{{z:.5g}}"
                                 f"<extra></extra>")]
    if show_path:
        traces += [t.update(visible=visible) for t in
                   _path_traces(whole, q, cfg, True) + _path_traces(whole, q, cfg, False)]
    return traces


def _surface_figure(shown, whole, cfg):
    """A 2-D slice's figure: every quantity's traces (:func:`_quantity_traces`), the first one
    visible, a menu that shows one quantity's traces and hides the others'."""
    from plotly.subplots import make_subplots

    from .static import draws_path

    names = quantities(whole)
    labels = axis_labels(whole, short=True)
    show_path = draws_path(whole, cfg) and bool(_path_traces(whole, names[0], cfg, False))
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "surface"}, {"type": "xy"}]],
                        subplot_titles=("3-D", "contours"), horizontal_spacing=0.08)
    owner = []  # the quantity of each trace
    for i, q in enumerate(names):
        for trace in _quantity_traces(shown, whole, q, cfg, show_path, visible=i == 0):
            fig.add_trace(trace, row=1, col=1 if trace.type in ("surface", "scatter3d") else 2)
            owner.append(q)
    _, scale = heights(np.ones(1), cfg)
    buttons = [dict(label=q, method="update",
                    args=[{"visible": [o == q for o in owner]},
                          {"title.text": f"slice '{whole.name}': {q}",
                           "scene.zaxis.title.text": f"{scale}{q}"}]) for q in names]
    fig.update_layout(
        height=560, title=dict(text=f"slice '{whole.name}': {names[0]}", x=0.5, xanchor="center"),
        showlegend=False,
        updatemenus=[dict(buttons=buttons, direction="down", x=0.0, y=1.16, xanchor="left",
                          showactive=True)] if len(names) > 1 else [],
        margin=dict(l=10, r=10, t=90, b=10),
        scene=dict(xaxis_title=labels[0], yaxis_title=labels[1], zaxis_title=f"{scale}{names[0]}"))
    fig.update_xaxes(title_text=labels[0], row=1, col=2)
    fig.update_yaxes(title_text=labels[1], row=1, col=2)
    return fig


def _caption(surface) -> str:
    from .static import caption_text

    return html.escape(caption_text(surface))


def _settings(surface_file) -> tuple[str, str]:
    """The run's settings (indented JSON where they parse) and versions, from the file."""
    from ..store.surface import open_surface

    with open_surface(surface_file) as f:
        settings = f.attrs.get("config", "")
        versions = f.attrs.get("versions", "")
    settings = settings.decode() if isinstance(settings, bytes) else str(settings)
    versions = versions.decode() if isinstance(versions, bytes) else str(versions)
    try:
        settings = json.dumps(json.loads(settings), indent=2)
    except ValueError:
        pass
    return settings, versions


def _slice_section(surface, cfg, max_points: int, embed_plotly: bool, page_id: str) -> str:
    """A slice's heading, caption (with the points shown, where fewer than evaluated) and
    figure."""
    import plotly.io as pio

    shown = decimated(surface, max_points)
    fig = _figure(shown, surface, cfg)
    points = shown_at(shown, surface)
    note = f"; <span class='shown-at'>{points}</span>" if points else ""
    return (f"<h2>slice '{html.escape(surface.name)}'</h2><p class='caption'>"
            f"{_caption(surface)}; {int(surface.done.sum()):,} of {surface.done.size:,} points "
            f"evaluated{note}</p>\n"
            + pio.to_html(fig, full_html=False, include_plotlyjs=embed_plotly,
                          div_id=f"{page_id}slice-{surface.name}", config={"displaylogo": False}))


def page_html(surface_file_or_surfaces, cfg, max_points: int = PAGE_POINTS,
              embed_plotly: bool = True) -> str:
    """The page of every slice (see the module docstring) as a string: of a surface file (its
    path; the run's settings at the end) or of slices read from one (a :class:`Surface`, or a
    dict name -> :class:`Surface`). Each slice's grid is shown at most ``max_points`` per axis
    (first and last rows and columns kept; the caption says so); the file keeps every point.
    ``cfg``: the plot settings. ``embed_plotly=False`` leaves plotly.js (4.8 MB) out, for a
    view placed where an earlier one brought it (a notebook's later outputs)."""
    from ..store.surface import Surface, read_surface

    source = surface_file_or_surfaces
    if isinstance(source, Surface):
        source = {source.name: source}
    if isinstance(source, dict):
        surfaces, settings, where = source, None, ", ".join(source)
        title, page_id = f"slices {where}", f"page{next(_PAGES)}-"  # ids apart in a notebook
    elif isinstance(source, (str, Path)):
        surfaces, (settings, versions) = read_surface(source), _settings(source)
        title, page_id = str(source), ""
    else:
        raise TypeError(f"The 'surface_file_or_surfaces' parameter of page_html must be a surface "
                        f"file's path, a Surface or a dict of them. Got {type(source).__name__} "
                        f"instead.")
    parts = ["<!DOCTYPE html>\n<html><head><meta charset='utf-8'>",
             f"<title>loss landscape: {html.escape(title)}</title>", _STYLE, "</head><body>",
             "<div class='landscape-page'>",
             f"<h1>Loss landscape of {html.escape(title)}</h1>",
             "<p id='status'>drawing...</p>", _STATUS_SCRIPT]
    for i, surface in enumerate(surfaces.values()):
        parts.append(_slice_section(surface, cfg, max_points, embed_plotly and i == 0, page_id))
    beside = Path(source).parent / "sharpness.h5" if isinstance(source, (str, Path)) else None
    if beside is not None and beside.is_file():  # the sharpness along training, when computed
        from .sharpness import sharpness_section

        parts.append(sharpness_section(beside, embed_plotly and not surfaces))
    if settings is not None:
        parts.append(f"<h2>settings</h2><pre>{html.escape(settings)}</pre>"
                     f"<p class='caption'>versions: {html.escape(versions)}</p>")
    parts.append("</div></body></html>\n")
    return "\n".join(parts)


def write_page(surface_file: Path, file: Path, cfg, max_points: int = PAGE_POINTS) -> Path:
    """The page of every slice of ``surface_file`` (:func:`page_html`), written to ``file``."""
    Path(file).write_text(page_html(Path(surface_file), cfg, max_points), encoding="utf-8")
    return Path(file)
