"""The interactive page: one self-contained HTML file for a whole surface file (plotly).

Each 2-D slice gets a 3-D surface and a contour map side by side, with a selector of the quantity
shown (loss, metrics, datasets, eigenvalues) and the path, whose points give on hover their
step, epoch, the slice's value under them (interpolated between grid points) and their true value.
A 1-D slice is a curve per quantity. The run's settings are at the end. plotly.js is embedded
once, so the page opens without a network; a status line says how many plots were drawn, or the
first script error.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from .common import axis_labels, heights, on_slice, quantities

_STATUS_SCRIPT = """
<script>
(function () {
  var status = document.getElementById("status");
  window.addEventListener("error", function (event) {
    status.textContent = "error: " + event.message;
    status.className = "error";
  });
  window.addEventListener("load", function () {
    if (status.className === "error") return;
    var plots = document.querySelectorAll(".js-plotly-plot").length;
    status.textContent = plots + " plots drawn";
    status.dataset.plots = plots;
  });
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


def _nan_to_none(values: np.ndarray) -> list:
    """An array as nested lists with NaN as None (plotly leaves a gap)."""
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(arr), arr, None).tolist()


def _colours(values: np.ndarray, cfg) -> tuple[np.ndarray, str]:
    """The values as coloured: log10 where they are all positive and ``plot.log_levels`` is on
    (as the contour figures), else as they are; and the colour bar's prefix."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if cfg.log_levels and finite.size and finite.min() > 0:
        return np.log10(values), "log10 "
    return values, ""


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


def slice_figure(surface, cfg):
    """The plotly figure of one slice: 3-D surface and contours (2-D) or curves (1-D), with a
    quantity selector."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .static import draws_path

    names = quantities(surface)
    labels = axis_labels(surface, short=True)
    if surface.ndim == 1:
        fig = go.Figure([go.Scatter(x=surface.xcoordinates, y=_nan_to_none(surface.shown[q]),
                                    name=q, mode="lines") for q in names])
        fig.update_layout(height=420, title=f"slice '{surface.name}'", xaxis_title=labels[0])
        return fig
    show_path = draws_path(surface, cfg) and bool(_path_traces(surface, names[0], cfg, False))
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "surface"}, {"type": "xy"}]],
                        subplot_titles=("3-D", "contours"), horizontal_spacing=0.08)
    first = names[0]
    buttons = [_quantity_button(surface, q, cfg, show_path) for q in names]
    z, scale = heights(surface.shown[first], cfg)
    colour, prefix = _colours(surface.shown[first], cfg)
    fig.add_trace(go.Surface(x=surface.xcoordinates, y=surface.ycoordinates, z=_nan_to_none(z),
                             surfacecolor=_nan_to_none(colour), colorscale="Viridis",
                             colorbar=dict(title=f"{prefix}{first}", x=0.44), name=first),
                  row=1, col=1)
    fig.add_trace(go.Contour(x=surface.xcoordinates, y=surface.ycoordinates,
                             z=_nan_to_none(colour), colorscale="Viridis", ncontours=cfg.levels,
                             colorbar=dict(title=f"{prefix}{first}"), name=first,
                             hovertemplate=f"x %{{x:.4g}}, y %{{y:.4g}}<br>{prefix}{first} "
                                           f"%{{z:.5g}}<extra></extra>"),
                  row=1, col=2)
    if show_path:
        for trace in _path_traces(surface, first, cfg, True):
            fig.add_trace(trace, row=1, col=1)
        for trace in _path_traces(surface, first, cfg, False):
            fig.add_trace(trace, row=1, col=2)
    fig.update_layout(
        height=560, title=f"slice '{surface.name}': {first}", showlegend=False,
        updatemenus=[dict(buttons=buttons, direction="down", x=0.0, y=1.16, xanchor="left",
                          showactive=True)] if len(names) > 1 else [],
        margin=dict(l=10, r=10, t=90, b=10),
        scene=dict(xaxis_title=labels[0], yaxis_title=labels[1], zaxis_title=f"{scale}{first}"))
    fig.update_xaxes(title_text=labels[0], row=1, col=2)
    fig.update_yaxes(title_text=labels[1], row=1, col=2)
    return fig


def _quantity_button(surface, q: str, cfg, show_path: bool) -> dict:
    """A menu entry that shows quantity ``q``: the surface's heights and colours, the contour's
    values, and (with the path) the path's heights and hover."""
    z, _ = heights(surface.shown[q], cfg)
    colour, prefix = _colours(surface.shown[q], cfg)
    data = {"z": [_nan_to_none(z), _nan_to_none(colour)],
            "surfacecolor": [_nan_to_none(colour), None],
            "colorbar.title.text": [f"{prefix}{q}", f"{prefix}{q}"]}
    traces = [0, 1]
    if show_path:
        three_d, flat = _path_traces(surface, q, cfg, True)[0], _path_traces(surface, q, cfg, False)[0]
        data["z"] += [three_d.z, three_d.z]
        data["customdata"] = [None, None, three_d.customdata, flat.customdata]
        data["hovertemplate"] = [None, None, three_d.hovertemplate, flat.hovertemplate]
        data["surfacecolor"] += [None, None]
        data["colorbar.title.text"] += [None, None]
        traces += [2, 3]
    return dict(label=q, method="update",
                args=[data, {"title.text": f"slice '{surface.name}': {q}"}, traces])


def _caption(surface) -> str:
    from .static import caption_text

    return html.escape(caption_text(surface))


def write_page(surface_file: Path, file: Path, cfg) -> Path:
    """The page of every slice of ``surface_file`` (see the module docstring)."""
    import plotly.io as pio

    from ..store.surface import open_surface, read_surface

    surfaces = read_surface(surface_file)
    with open_surface(surface_file) as f:
        settings = f.attrs.get("config", "")
        versions = f.attrs.get("versions", "")
    settings = settings.decode() if isinstance(settings, bytes) else str(settings)
    versions = versions.decode() if isinstance(versions, bytes) else str(versions)
    parts = ["<!DOCTYPE html>\n<html><head><meta charset='utf-8'>",
             f"<title>loss landscape: {html.escape(Path(surface_file).parent.name)}</title>",
             _STYLE, "</head><body>",
             f"<h1>Loss landscape of {html.escape(str(surface_file))}</h1>",
             "<p id='status'>drawing...</p>", _STATUS_SCRIPT]
    embedded = False
    for name, surface in surfaces.items():
        parts.append(f"<h2>slice '{html.escape(name)}'</h2><p class='caption'>"
                     f"{_caption(surface)}; {int(surface.done.sum())} of {surface.done.size} "
                     f"points evaluated</p>")
        parts.append(pio.to_html(slice_figure(surface, cfg), full_html=False,
                                 include_plotlyjs=not embedded, div_id=f"slice-{name}",
                                 config={"displaylogo": False}))
        embedded = True
    try:
        settings = json.dumps(json.loads(settings), indent=2)
    except ValueError:
        pass
    parts.append(f"<h2>settings</h2><pre>{html.escape(settings)}</pre>"
                 f"<p class='caption'>versions: {html.escape(versions)}</p>")
    parts.append("</body></html>\n")
    Path(file).write_text("\n".join(parts), encoding="utf-8")
    return Path(file)
