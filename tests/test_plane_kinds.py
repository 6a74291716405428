"""Each plane kind answers for the planes it built: a kind registered from outside the package
gives its slices' captions, axis labels, default path drawing and summary keys, read back from
the file; a surface whose kind is not registered in this process still plots, with the defaults."""

import dataclasses
import re
from html import unescape

import matplotlib
import pytest

from landscape_dist.commands import info, plot, sweep
from landscape_dist.config import config_from_dict
from landscape_dist.config.schema import PlotConfig
from landscape_dist.figures.static import caption_text, draws_path
from landscape_dist.planes import PLANE_KINDS, PlaneKind, kind_of
from landscape_dist.planes.pca import PCAPlane
from landscape_dist.planes.random import RandomPlane
from landscape_dist.store.surface import read_surface


GRID = {"x": {"points": 5}, "y": {"points": 3}, "tile": [2, 2]}


def _svg_texts(path) -> list[str]:
    """The texts an SVG figure draws (written with ``svg.fonttype: none``)."""
    return [unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text())]


def _plot_svg(surface_file, out) -> dict:
    """Every figure of ``surface_file`` as SVG with its text kept as text: file name -> texts."""
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        written = plot(surface_file, out, formats=("svg",))
    return {p.rsplit("/", 1)[-1]: _svg_texts(out / p.rsplit("/", 1)[-1]) for p in written}


def test_kind_of_finds_the_registered_kind_or_the_base(axes_kind):
    assert isinstance(kind_of({"kind": "random"}), RandomPlane)
    assert isinstance(kind_of({"kind": "pca"}), PCAPlane)
    assert isinstance(kind_of({"kind": "axes"}), axes_kind)
    assert type(kind_of({"kind": "fisher"})) is PlaneKind
    assert type(kind_of({})) is PlaneKind
    base = PlaneKind()
    assert base.caption({"kind": "fisher"}) == "fisher directions"
    assert base.axis_labels({"kind": "fisher"}, 2) == ["direction 0", "direction 1"]
    assert base.axis_labels({"kind": "fisher"}, 1, short=True) == ["direction 0"]
    assert base.draws_path({"kind": "fisher"}) is False and base.summary_keys == ("kind", "cosine")


@pytest.mark.slow
def test_a_registered_kind_gives_its_slices_captions_labels_and_summaries(tmp_path, axes_kind):
    config = config_from_dict({"grid": GRID, "slices": [
        {"name": "plane", "directions": {"kind": "axes", "first": 3, "second": 70}},
        {"name": "line", "grid": {"x": {"points": 5}, "y": None, "tile": [1, 2]},
         "directions": {"kind": "axes", "first": 5}}]})
    summary = sweep(config, tmp_path, in_process=True, progress=False)["slices"]
    assert summary["plane"]["kind"] == "axes" and summary["plane"]["axes"] == [3, 70]
    assert summary["line"]["axes"] == [5]
    assert "cosine" not in summary["plane"]  # the kind's keys, not the random kind's
    directions = info(tmp_path / "surface.h5")["slices"]["plane"]["directions"]
    assert directions["axes"] == [3, 70] and "cosine" not in directions
    assert directions["kind"] == "axes" and directions["normalization"] == "filter"

    surfaces = read_surface(tmp_path / "surface.h5")
    assert caption_text(surfaces["plane"]) == "unit vectors of weights 3 and 70"
    fake_path = object()  # the path is drawn by default (show_path: auto) where the kind says so
    with_path = dataclasses.replace(surfaces["plane"], path=fake_path)
    assert draws_path(with_path, PlotConfig()) is True
    assert draws_path(with_path, PlotConfig(show_path="never")) is False

    texts = _plot_svg(tmp_path / "surface.h5", tmp_path / "figs")
    for name in ("plane_contour.svg", "plane_filled.svg"):
        assert "unit vectors of weights 3 and 70" in texts[name]
        assert {"weight 3 alone", "weight 70 alone"} <= set(texts[name])
    for name in ("plane_3d.svg", "plane_heatmap.svg"):
        assert {"w3", "w70"} <= set(texts[name])
    assert "unit vectors of weights 5" in texts["line_1d.svg"]
    assert "weight 5 alone" in texts["line_1d.svg"]
    assert not any("direction 0" in t for file in texts.values() for t in file)


def test_a_surface_of_an_unregistered_kind_plots_with_the_defaults(tmp_path, axes_kind):
    config = config_from_dict({"grid": GRID, "slices": [
        {"name": "plane", "directions": {"kind": "axes", "first": 3, "second": 70}}]})
    sweep(config, tmp_path, in_process=True, progress=False)
    PLANE_KINDS.remove("axes")  # as in a process that never imported the plugin
    surface = read_surface(tmp_path / "surface.h5")["plane"]
    assert caption_text(surface) == "axes directions"
    assert draws_path(dataclasses.replace(surface, path=object()), PlotConfig()) is False
    directions = info(tmp_path / "surface.h5")["slices"]["plane"]["directions"]
    assert "axes" not in directions and "cosine" in directions  # the base's keys
    texts = _plot_svg(tmp_path / "surface.h5", tmp_path / "figs")
    assert sorted(texts) == ["plane_3d.svg", "plane_contour.svg", "plane_filled.svg",
                             "plane_heatmap.svg"]
    assert "axes directions" in texts["plane_contour.svg"]
    for file in texts.values():
        assert {"direction 0", "direction 1"} <= set(file)
