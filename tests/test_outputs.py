"""Output formats read back by readers that are not ours: VTK's reader for the ParaView meshes,
Pillow for the animation and images, a real headless Chromium for the interactive page; and the
command line's summary, --json, --version and info."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from landscape_dist.config import ConfigError, config_from_dict
from landscape_dist.commands import run
from landscape_dist.store.surface import read_surface

FORMATS = ["png", "html", "vtp", "gif"]
TINY = {
    "model": {"source": "parabola"}, "data": {"source": "parabola"},
    "train": {"epochs": 6, "batch_size": 64, "learning_rate": 0.01},
    "grid": {"x": {"min": -1.0, "max": 1.0, "points": 7},
             "y": {"min": -1.0, "max": 1.0, "points": 6}, "tile": [3, 7]},
    "slices": [{"name": "random", "directions": {"seed": 1}},
               {"name": "pca", "directions": {"kind": "pca", "ignore": "none"},
                "grid": {"x": {"min": None, "max": None, "points": 7},
                         "y": {"min": None, "max": None, "points": 6}}}],
    "plot": {"formats": FORMATS, "animation_frames": 8, "animation_seconds": 2.0, "zmax": 3.0},
}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One small run writing every format: (output directory, its summary, the config)."""
    out = tmp_path_factory.mktemp("outputs")
    config = config_from_dict(TINY)
    summary = run(config, out, in_process=True, progress=False)
    return out, summary, config


@pytest.mark.slow
def test_run_writes_every_format_next_to_the_contours(made):
    out, summary, _ = made
    names = sorted(os.path.basename(p) for p in summary["images"])
    for stem in ("random", "pca"):
        for suffix in ("_contour.png", "_filled.png", "_3d.png", "_heatmap.png", ".vtp"):
            assert f"{stem}{suffix}" in names
    assert "pca_path.gif" in names and "random_path.gif" not in names  # paths on PCA slices (auto)
    assert "landscape.html" in names


# ---------------------------------------------------------------- ParaView

def _read_vtp(path):
    from vtkmodules.util.numpy_support import vtk_to_numpy
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader

    reader = vtkXMLPolyDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    poly = reader.GetOutput()
    data = poly.GetPointData()
    arrays = {data.GetArrayName(i): vtk_to_numpy(data.GetArray(i)) for i in range(data.GetNumberOfArrays())}
    polys = vtk_to_numpy(poly.GetPolys().GetConnectivityArray())
    lines = vtk_to_numpy(poly.GetLines().GetConnectivityArray())
    return poly, vtk_to_numpy(poly.GetPoints().GetData()), arrays, polys, lines


def test_vtp_read_back_by_vtk_equals_the_surface(made):
    out, _, _ = made
    surface = read_surface(out / "surface.h5")["pca"]
    poly, points, arrays, polys, lines = _read_vtp(out / "pca.vtp")
    ny, nx = surface.values["loss"].shape
    n_path = len(surface.path.coords)
    assert poly.GetNumberOfPoints() == nx * ny + n_path
    assert poly.GetNumberOfPolys() == (nx - 1) * (ny - 1) and poly.GetNumberOfLines() == 1
    np.testing.assert_array_equal(polys[:4], [0, 1, nx + 1, nx])  # the first cell's corners
    np.testing.assert_array_equal(lines, np.arange(nx * ny, nx * ny + n_path))
    np.testing.assert_array_equal(arrays["loss"][:nx * ny], surface.values["loss"].ravel())
    np.testing.assert_array_equal(arrays["loss"][nx * ny:], surface.path.values["loss"])
    np.testing.assert_array_equal(arrays["step"][nx * ny:], surface.path.step)
    np.testing.assert_allclose(points[:nx * ny, 2], np.minimum(surface.values["loss"].ravel(), 3.0))
    np.testing.assert_allclose(points[:nx, 0], surface.xcoordinates)
    assert set(arrays["part"]) == {0, 1}


def test_vtp_log_heights_and_diverged_cells(made, tmp_path):
    from landscape_dist.figures.vtk import write_vtp

    out, _, config = made
    surface = read_surface(out / "surface.h5")["random"]
    surface.values["loss"][2, 3] = np.nan  # a diverged point: its four cells are left out
    cfg = dataclasses.replace(config.plot, zmax=None, log_z=True)
    write_vtp(surface, "loss", tmp_path / "m.vtp", cfg)
    poly, points, arrays, polys, _ = _read_vtp(tmp_path / "m.vtp")
    ny, nx = surface.values["loss"].shape
    assert poly.GetNumberOfPolys() == (nx - 1) * (ny - 1) - 4
    assert 2 * nx + 3 not in set(polys)
    assert np.isnan(arrays["loss"][2 * nx + 3])
    finite = np.isfinite(surface.values["loss"].ravel())
    np.testing.assert_allclose(points[:nx * ny, 2][finite],
                               np.log10(surface.values["loss"].ravel()[finite]))


# ---------------------------------------------------------------- animation and images

def test_gif_has_the_configured_frames_and_duration(made):
    from PIL import Image

    out, _, _ = made
    with Image.open(out / "pca_path.gif") as gif:
        assert gif.n_frames == 8
        durations, frames = [], []
        for i in range(gif.n_frames):
            gif.seek(i)
            durations.append(gif.info["duration"])
            frames.append(np.asarray(gif.convert("RGB"), dtype=float))
    assert sum(durations) == pytest.approx(2000, abs=80)
    assert np.abs(frames[0] - frames[-1]).mean() > 0.1  # the path moved


def test_3d_and_heat_map_images_are_drawn(made):
    from PIL import Image

    out, _, _ = made
    for name in ("pca_3d.png", "random_heatmap.png"):
        with Image.open(out / name) as image:
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert pixels.shape[0] > 300 and pixels.std() > 10


@pytest.mark.parametrize("filled", [False, True])
def test_contour_figures_draw_the_configured_levels_over_the_values(made, tmp_path, monkeypatch,
                                                                   filled):
    """The drawn contour set: ``plot.levels`` log-spaced levels from the slice's smallest loss to
    its largest (all > 0), over the stored grid and values."""
    from matplotlib.contour import ContourSet

    from landscape_dist.figures import static

    out, _, config = made
    surface = read_surface(out / "surface.h5")["random"]
    fig = static.plot_contour(surface, None, config.plot, filled=filled)  # no file: the figure
    (contours,) = [c for ax in fig.axes for c in ax.collections if isinstance(c, ContourSet)]
    loss = surface.values["loss"]
    assert loss.min() > 0 and config.plot.log_levels and config.plot.levels == 25
    np.testing.assert_allclose(contours.levels, np.geomspace(loss.min(), loss.max(), 25),
                               rtol=1e-12)
    # the lines drawn at the lowest level run where the loss is lowest: within a grid cell of it
    low = np.unravel_index(np.argmin(loss), loss.shape)
    if not filled:
        level = next(i for i, segs in enumerate(contours.allsegs) if any(len(s) for s in segs))
        xy = np.concatenate([s for s in contours.allsegs[level] if len(s)])
        dx, dy = np.diff(surface.xcoordinates[:2])[0], np.diff(surface.ycoordinates[:2])[0]
        near = np.abs(xy - [surface.xcoordinates[low[1]], surface.ycoordinates[low[0]]])
        assert (near <= [dx, dy]).all(axis=1).any()


def test_mp4_without_ffmpeg_is_refused_in_one_line(made, monkeypatch):
    from matplotlib import animation

    from landscape_dist.figures.formats import write_outputs

    out, _, config = made
    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    with pytest.raises(ValueError) as err:
        write_outputs(out / "surface.h5", out, config.plot, ("mp4",))
    assert str(err.value) == ("The output format 'mp4' needs ffmpeg, which is not installed here. "
                              "Install ffmpeg, or use the 'gif' format.")


@pytest.mark.parametrize("change, message", [
    ({"formats": ["png", "ply"]}, "The 'plot.formats.1' setting must be one of ('png', 'pdf', "
     "'svg', 'vtp', 'html', 'gif', 'mp4', 'tensorboard'). Got 'ply' instead."),
    ({"zmin": 2.0, "zmax": 1.0}, "The 'plot.zmax' setting must be greater than plot.zmin=2.0. "
     "Got 1.0 instead."),
    ({"animation_frames": 1}, "The 'plot.animation_frames' setting must be an integer >= 2. "
     "Got 1 instead."),
])
def test_bad_output_settings_are_named(change, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"plot": change})
    assert str(err.value) == message


# ---------------------------------------------------------------- the interactive page

def _browser_required() -> bool:
    """In CI (``CI`` set, as CI services set it) or when asked, the page's browser tests must run:
    a missing browser fails them instead of skipping them."""
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or os.environ.get("LANDSCAPE_DIST_BROWSER_TESTS") == "required"


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if _browser_required():
            pytest.fail("chromium is required for the browser test (CI or "
                        "LANDSCAPE_DIST_BROWSER_TESTS=required is set) and is not installed")
        pytest.skip("chromium is not installed (.ci/run installs it)")
    return path


@pytest.mark.parametrize("env, outcome", [
    ({"CI": "true"}, pytest.fail.Exception),
    ({"CI": "1", "LANDSCAPE_DIST_BROWSER_TESTS": "optional"}, pytest.fail.Exception),
    ({"LANDSCAPE_DIST_BROWSER_TESTS": "required"}, pytest.fail.Exception),
    ({"CI": "false"}, pytest.skip.Exception),
    ({}, pytest.skip.Exception),
])
def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch, env, outcome):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    for name in ("CI", "LANDSCAPE_DIST_BROWSER_TESTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as err:
        _chromium()  # a skip caught here too: one raised where a failure is due fails the test
    assert err.type is outcome, str(err.value)
    assert "chromium" in str(err.value) and "not installed" in str(err.value)


def _browse(page, tmp_path, *extra):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
             "--window-size=1300,1500"]
    return subprocess.run([_chromium(), *flags, *extra, page.as_uri()], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_page_renders_in_a_headless_browser(made, tmp_path):
    from PIL import Image

    out, _, _ = made
    page = out / "landscape.html"
    text = page.read_text()
    assert "<script src=" not in text  # plotly.js embedded: opens without a network
    assert text.count("Plotly.newPlot") == 2
    shot = tmp_path / "shot.png"
    dom = _browse(page, tmp_path, "--dump-dom", f"--screenshot={shot}").stdout  # one browser start
    assert 'id="status" data-plots="2">2 plots drawn<' in dom
    assert dom.count('class="main-svg"') >= 4 and "gl-container" in dom  # contours and WebGL 3-D
    assert ("step %{customdata[0]:.0f}, epoch %{customdata[1]:.2f}\\u003cbr\\u003eslice loss "
            "%{customdata[2]:.5g} (interpolated)\\u003cbr\\u003etrue loss %{customdata[3]:.5g}") in text
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 20  # not blank


@pytest.mark.slow
def test_page_reports_a_script_error(made, tmp_path):
    out, _, _ = made
    broken = tmp_path / "broken.html"
    broken.write_text((out / "landscape.html").read_text().replace(
        "</body>", "<script>undefinedFunctionCall();</script></body>"))
    dom = _browse(broken, tmp_path, "--dump-dom").stdout
    assert 'class="error"' in dom and "undefinedFunctionCall is not defined" in dom


# ---------------------------------------------------------------- the command line

def _cli(*args):
    """The command in a fresh process, as a user's shell starts it (TensorFlow's own logging
    not silenced beforehand)."""
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    return subprocess.run([sys.executable, "-m", "landscape_dist.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def _main(capsys, *args):
    """The command line's ``main`` in this process: (exit code, stdout, stderr)."""
    from landscape_dist.cli import main

    capsys.readouterr()
    code = main(list(args))
    said = capsys.readouterr()
    return code, said.out, said.err


def test_version_and_info(made, capsys):
    out, _, _ = made
    from landscape_dist import __version__
    from landscape_dist.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"landscape-dist {__version__}"
    code, stdout, _ = _main(capsys, "info", str(out / "surface.h5"))
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].startswith(f"{out / 'surface.h5'}: complete surface file, 2 slices; written with")
    assert lines[1] == "  slice 'random': x -1..1 (7 points); y -1..1 (6 points); 42 of 42 points done (100%)"
    assert lines[2] == "    quantities: loss; path: yes"
    # stored statistics at the precision they mean: at most three significant digits
    cosine = lines[3].split("cosine ")[1].split(",")[0]
    assert lines[3].startswith("    directions: kind random, ") and cosine == f"{float(cosine):.3g}"
    info = json.loads(_main(capsys, "info", str(out / "surface.h5"), "--json")[1])
    assert info["slices"]["pca"]["directions"]["kind"] == "pca" and info["complete"] is True
    assert info["config"]["plot"]["formats"] == FORMATS


@pytest.mark.slow
def test_sweep_says_a_short_summary_on_stderr_and_json_only_when_asked(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**TINY, "slices": [TINY["slices"][0]]}))
    proc = _cli("sweep", str(config), "--out", str(tmp_path / "a"), "--in-process", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.splitlines()[0].startswith(
        "swept 1 slice, 42 points in ") and f"surface: {tmp_path / 'a' / 'surface.h5'}" in proc.stderr
    for banner in ("absl::InitializeLog", "cuda drivers", "oneDNN"):
        assert banner not in proc.stderr
    code, stdout, _ = _main(capsys, "sweep", str(config), "--out", str(tmp_path / "b"),
                            "--in-process", "--no-progress", "--json")
    assert code == 0 and json.loads(stdout)["slices"]["random"]["points"] == 42


@pytest.mark.slow
def test_dry_run_estimates_and_writes_nothing(tmp_path, capsys):
    from landscape_dist.model.examples import parabola_data, parabola_model
    from landscape_dist.model.reference import flops_per_example

    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "never"
    # built first: TensorFlow is running in this process before the probes, whose workers then
    # leave its threads as they are (a dry run in a fresh process would set them)
    model = parabola_model()
    model.build((None, 1))
    flop = flops_per_example(model) * len(parabola_data()[0]) / 1e9
    code, stdout, stderr = _main(capsys, "run", str(config), "--out", str(out), "--dry-run", "--json")
    assert code == 0, stderr
    assert not out.exists()
    result = json.loads(stdout)
    assert set(result["slices"]) == {"random", "pca"} and result["workers"] >= 1
    for s in result["slices"].values():
        assert (s["points"], s["tiles"]) == (42, 2)
        assert s["gflop_per_point"] == pytest.approx(flop, rel=1e-9)
        assert s["probe_points_per_s"] > 0 and s["estimated_s"] >= 0
        # refinement's bounds: at least the two coarse lattices, at most every point
        assert not s["refined"] and 0 < s["refined_points_at_least"] <= s["points"]
        assert s["refined_estimated_s"][0] <= s["refined_estimated_s"][1] == s["estimated_s"]
    assert result["as_configured_s"] == [result["estimated_s"]] * 2  # nothing refined
    assert result["slices"]["random"]["estimated_s"] > 0  # the first slice compiles
    assert result["estimated_s"] == pytest.approx(sum(s["estimated_s"] for s in result["slices"].values()), abs=0.11)
    code, _, stderr = _main(capsys, "sweep", str(config), "--out", str(out), "--dry-run",
                            "--in-process")
    assert code == 0 and not out.exists()
    said = stderr.splitlines()
    assert said[0] == "dry run: nothing written; 1 worker (in this process)"
    assert [line.split(": ")[0] for line in said[1:]] == [
        "  slice 'random'", "  slice 'pca'", "estimated sweep as configured"]
    assert not any("refine" in line or "about 0 s" in line for line in said)  # nothing refined
