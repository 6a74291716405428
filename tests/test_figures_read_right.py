"""Figures that read right: 1-D curves with losses on one axis and metrics on another, each curve
named by dataset and quantity; colour bars ticked at round values; the interactive page showing
a large slice's grid decimated (and saying so) while the file keeps every point."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pytest

from landscape_dist.config.sections import PlotConfig
from landscape_dist.core.layout import WeightLayout
from landscape_dist.core.plane import Plane
from landscape_dist.figures import html as page
from landscape_dist.figures import static
from landscape_dist.figures.common import (decimated, round_ticks, shown_at, stride_indices,
                                           tick_text)
from landscape_dist.store.surface import Surface, SurfaceWriter, read_surface

META = {"kind": "random", "seed": 1, "normalization": "filter"}


def _surface(values: dict, nx: int, ny: int | None = None, name: str = "s") -> Surface:
    xs = np.linspace(-0.5, 1.5, nx)
    ys = None if ny is None else np.linspace(-1.0, 1.0, ny)
    shape = (nx,) if ny is None else (ny, nx)
    return Surface(name=name, xcoordinates=xs, ycoordinates=ys, values=values,
                   done=np.ones(shape, bool), meta=dict(META), centre=np.zeros(3),
                   directions=np.eye(2, 3), layout=WeightLayout(("w",), ((3,),)),
                   non_trainable=[], path=None)


def _two_datasets_1d(n: int = 41) -> Surface:
    x = np.linspace(-0.5, 1.5, n)
    return _surface({"train/loss": 0.1 + 2 * (x - 1) ** 2, "test/loss": 0.3 + 2 * (x - 1) ** 2,
                     "train/accuracy": 0.99 - 0.3 * (x - 1) ** 2,
                     "test/accuracy": 0.9 - 0.3 * (x - 1) ** 2,
                     "train/hessian_max": 1 + x, "train/hessian_min": -x}, n)


@pytest.fixture
def figures(monkeypatch):
    """The figures the module draws, kept open (plt.close recorded instead)."""
    kept, close = [], plt.close
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for fig in kept:
        close(fig)


# ---------------------------------------------------------------- 1-D curves

def test_1d_losses_share_one_axis_and_metrics_another(tmp_path, figures):
    static.plot_curve(_two_datasets_1d(), tmp_path / "s_1d.png", PlotConfig())
    (fig,) = figures
    left, right = fig.axes
    assert [line.get_label() for line in left.get_lines()] == ["train loss", "test loss"]
    assert [line.get_label() for line in right.get_lines()] == ["train accuracy", "test accuracy"]
    assert (left.get_ylabel(), right.get_ylabel()) == ("loss", "metric")
    assert left.get_yscale() == "log" and right.get_yscale() == "linear"
    legend = right.get_legend() or left.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "train loss", "test loss", "train accuracy", "test accuracy"]  # the eigen pair: apart
    colours = {line.get_label(): line.get_color() for ax in fig.axes for line in ax.get_lines()}
    assert colours["train loss"] == colours["train accuracy"] != colours["test loss"]
    assert (tmp_path / "s_1d.png").stat().st_size > 0


def test_1d_datasets_figure_puts_losses_on_one_axis_and_the_gap_below(tmp_path, figures):
    static.plot_datasets(_two_datasets_1d(), tmp_path / "s_datasets.png", PlotConfig())
    (fig,) = figures
    losses, gap = fig.axes
    assert [line.get_label() for line in losses.get_lines()] == ["train loss", "test loss"]
    assert losses.get_ylabel() == "loss" and gap.get_ylabel() == "loss gap"
    assert gap.get_lines()[0].get_label() == "gap: test loss - train loss"


def test_1d_slice_alone_draws_one_axis(tmp_path, figures):
    x = np.linspace(-1, 1, 9)
    static.plot_curve(_surface({"loss": 1 + x ** 2}, 9), tmp_path / "one.png", PlotConfig())
    (fig,) = figures
    assert len(fig.axes) == 1 and fig.axes[0].get_ylabel() == "loss"
    assert fig.axes[0].get_title().startswith("loss along slice 's'")


def test_1d_page_curves_losses_left_metrics_right():
    fig = page.slice_figure(_two_datasets_1d(), PlotConfig())
    axes = {trace.name: trace.yaxis or "y" for trace in fig.data}
    assert axes == {"train loss": "y", "test loss": "y", "train accuracy": "y2",
                    "test accuracy": "y2"}
    assert fig.layout.yaxis.title.text == "loss" and fig.layout.yaxis.type == "log"
    assert fig.layout.yaxis2.title.text == "metric" and fig.layout.yaxis2.side == "right"


# ---------------------------------------------------------------- colour bars

@pytest.mark.parametrize("vmin, vmax, log, expected", [
    (139.6, 197.4, False, ["140", "150", "160", "170", "180", "190"]),
    (139.6, 197.4, True, ["140", "150", "160", "170", "180", "190"]),  # < 3 of 1, 2, 5 x 10^k
    (0.799, 1.199, True, ["0.8", "0.9", "1", "1.1"]),
    (0.01, 2.3, True, ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]),
    (1e-3, 1e3, True, ["0.001", "0.01", "0.1", "1", "10", "100", "1000"]),
    (2e-6, 3e-5, True, ["2e-6", "5e-6", "1e-5", "2e-5"]),
    (-0.0347, 0.0347, False, ["-0.03", "-0.02", "-0.01", "0", "0.01", "0.02", "0.03"]),
    (3.0, 3.0, False, []),
])
def test_round_ticks(vmin, vmax, log, expected):
    assert [tick_text(t) for t in round_ticks(vmin, vmax, log)] == expected


def _is_round(values: list[float]) -> bool:
    """1, 2 or 5 x 10^k each, or the multiples of one 1, 2 or 5 x 10^k step."""
    def mantissa(v):
        return round(abs(v) / 10 ** np.floor(np.log10(abs(v))), 9)

    if all(v > 0 and mantissa(v) in (1, 2, 5) for v in values):
        return True
    steps = np.diff(values)
    return (len(values) >= 2 and np.allclose(steps, steps[0]) and mantissa(steps[0]) in (1, 2, 5)
            and np.allclose(np.round(np.array(values) / steps[0]), np.array(values) / steps[0]))


def _colour_bar_labels(fig) -> list[list[str]]:
    return [[t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes
            if hasattr(ax, "_colorbar")]


def test_every_colour_bar_is_ticked_at_round_values(tmp_path, figures):
    from landscape_dist.figures.curvature import plot_eigen_map
    from landscape_dist.figures.surface3d import plot_heatmap, plot_surface3d

    x = np.linspace(-1, 1, 21)
    X, Y = np.meshgrid(x, x)
    s = _surface({"loss": 139.6 + 57.8 * (X ** 2 + Y ** 2) / 2,
                  "accuracy": 0.799 + 0.4 * (X ** 2 + Y ** 2) / 2,
                  "hessian_max": 3.1 + X, "hessian_min": -0.0347 * Y}, 21, 21)
    cfg = PlotConfig()
    static.plot_contour(s, tmp_path / "f.png", cfg, filled=True)
    static.plot_contour(s, tmp_path / "a.png", cfg, "accuracy", filled=True)
    plot_heatmap(s, tmp_path / "h.png", cfg, "accuracy")
    plot_surface3d(s, tmp_path / "3.png", cfg, "loss", False)
    plot_eigen_map(s, tmp_path / "e.png", cfg)
    bars = [labels for fig in figures for labels in _colour_bar_labels(fig)]
    assert len(bars) == 7
    for labels in bars:
        values = [float(t.replace("\u2212", "-")) for t in labels]
        assert len(values) >= 2 and _is_round(values), labels
        assert all(tick_text(v) == t.replace("\u2212", "-") for v, t in zip(values, labels))
    assert bars[0] == ["140", "150", "160", "170", "180", "190"]


def test_page_colour_bars_are_ticked_at_round_values_of_the_quantity():
    x = np.linspace(-1, 1, 21)
    X, Y = np.meshgrid(x, x)
    fig = page.slice_figure(_surface({"loss": 0.01 + X ** 2 + Y ** 2}, 21, 21), PlotConfig())
    bar = fig.data[0].colorbar
    assert list(bar.ticktext) == ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]
    np.testing.assert_allclose(bar.tickvals, np.log10([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2]))
    assert bar.title.text == "loss"


# ---------------------------------------------------------------- decimation for display

@pytest.mark.parametrize("n, most", [(1001, 201), (1000, 201), (25, 11), (41, 11), (11, 11),
                                     (3, 2), (7, 100)])
def test_stride_keeps_first_and_last_and_at_most_max_points(n, most):
    kept = stride_indices(n, most)
    assert kept[0] == 0 and kept[-1] == n - 1 and len(kept) <= most
    assert len(kept) == n if n <= most else len(set(np.diff(kept)[:-1])) <= 1


def test_stride_refuses_fewer_than_two_points():
    with pytest.raises(ValueError) as err:
        stride_indices(10, 1)
    assert str(err.value) == "The 'max_points' parameter must be an integer >= 2. Got 1 instead."


def _write(path, nx: int, ny: int | None) -> None:
    xs, ys = np.linspace(-1, 1, nx), None if ny is None else np.linspace(-2, 2, ny)
    writer = SurfaceWriter(path, {"plot": {}}, {"numpy": np.__version__})
    plane = Plane(np.zeros(3, np.float32), np.eye(2 if ny else 1, 3, dtype=np.float32),
                  WeightLayout(("w",), ((3,),)), dict(META))
    sw = writer.add_slice("big", xs, ys, ("loss", "accuracy"), plane, [])
    grid = np.meshgrid(xs, ys) if ny else (xs, 0.0)
    sw.group["values"]["loss"][...] = 0.1 + grid[0] ** 2 + grid[1] ** 2
    sw.group["values"]["accuracy"][...] = 1 / (1 + grid[0] ** 2)
    sw.group["done"][...] = True
    writer.finish()


def test_page_shows_a_large_grid_decimated_and_says_so(tmp_path):
    _write(tmp_path / "s.h5", 41, 25)
    whole = read_surface(tmp_path / "s.h5")["big"]
    text = page.page_html(tmp_path / "s.h5", PlotConfig(), max_points=11)
    assert "shown at 11 x 9 of 41 x 25 points" in text
    assert "1,025 of 1,025 points evaluated" in text
    shown = decimated(whole, 11)
    assert shown.values["loss"].shape == (9, 11) and whole.values["loss"].shape == (25, 41)
    assert (shown.xcoordinates[[0, -1]] == [-1, 1]).all()
    assert (shown.ycoordinates[[0, -1]] == [-2, 2]).all()
    np.testing.assert_array_equal(shown.values["loss"][[0, -1]][:, [0, -1]],
                                  whole.values["loss"][[0, -1]][:, [0, -1]])
    fig = page.slice_figure(whole, PlotConfig(), max_points=11)
    surfaces = [t for t in fig.data if t.type == "surface"]
    assert [np.shape(t.z) for t in surfaces] == [(9, 11), (9, 11)]  # loss, accuracy
    assert (surfaces[0].x[[0, -1]] == [-1, 1]).all() and (surfaces[0].y[[0, -1]] == [-2, 2]).all()
    out = tmp_path / "page.html"
    page.write_page(tmp_path / "s.h5", out, PlotConfig(), max_points=11)
    assert out.read_text(encoding="utf-8") == text  # the file is the string


def test_page_of_a_small_grid_is_not_decimated(tmp_path):
    _write(tmp_path / "s.h5", 9, 7)
    whole = read_surface(tmp_path / "s.h5")["big"]
    assert decimated(whole, 9) is whole and shown_at(whole, whole) == ""
    text = page.page_html(tmp_path / "s.h5", PlotConfig())
    assert "shown at" not in text and "63 of 63 points evaluated" in text


def test_1d_page_decimated_and_notebook_size(tmp_path):
    _write(tmp_path / "s.h5", 301, None)
    surfaces = read_surface(tmp_path / "s.h5")
    text = page.page_html(surfaces, PlotConfig(), max_points=page.NOTEBOOK_POINTS)
    assert "shown at 101 of 301 points" in text
    assert "<h2>settings</h2>" not in text  # slices given, not a file: no settings to show
    assert re.search(r"id=\"page\d+-slice-big\"", text)  # ids apart for several in a notebook
    again = page.page_html(surfaces["big"], PlotConfig(), max_points=101)
    assert re.findall(r"id=\"(page\d+)-slice-big\"", again) != re.findall(
        r"id=\"(page\d+)-slice-big\"", text)


def test_page_html_refuses_what_is_not_a_surface():
    with pytest.raises(TypeError) as err:
        page.page_html(42, PlotConfig())
    assert str(err.value) == ("The 'surface_file_or_surfaces' parameter of page_html must be a "
                              "surface file's path, a Surface or a dict of them. Got int instead.")
