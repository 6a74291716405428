"""Training with a recorded path, the surface file, and the CLI end to end."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from landscape_dist.cli import main
from landscape_dist.config import config_from_dict
from landscape_dist.commands import sweep, train
from landscape_dist.store.surface import read_run_info, read_surface
from landscape_dist.model.trajectory import read_trajectory

TINY = {
    "model": {"source": "parabola"}, "data": {"source": "parabola"},
    "train": {"epochs": 4, "batch_size": 64, "learning_rate": 0.01, "record_every": 2,
              "record_unit": "step"},
    "grid": {"x": {"min": -1.0, "max": 1.0, "points": 6}, "y": {"min": -1.0, "max": 1.0, "points": 5},
             "tile": [2, 4]},
    "slices": [{"name": "random", "directions": {"seed": 1}},
               {"name": "pca", "directions": {"kind": "pca"},
                "grid": {"x": {"min": None, "max": None, "points": 5},
                         "y": {"min": None, "max": None, "points": 4}}},
               {"name": "line", "grid": {"y": None, "x": {"points": 7}, "tile": [1, 3]}}],
    "cluster": {"num_workers": 1},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    summary = train(config_from_dict(TINY), out)
    return out, summary


def test_training_records_the_path_and_saves_the_centre(trained):
    out, summary = trained
    traj = read_trajectory(out / "trajectory.h5")
    # 256 examples / 64 per batch = 4 steps per epoch, 4 epochs, every 2 steps, plus the start
    assert traj.step.tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert traj.weights.shape == (9, 8513) and summary["checkpoints"] == 9
    import keras
    final = keras.models.load_model(out / "model.keras")
    np.testing.assert_array_equal(traj.layout.flatten([v.numpy() for v in final.trainable_variables]),
                                  traj.weights[-1])


def test_training_batches_hold_every_example_once_per_epoch_in_a_fresh_seeded_order():
    from landscape_dist.model.training import _shuffled_batches

    x = np.arange(10, dtype=np.float32)[:, None]
    y = {"out": np.arange(10) * 2}  # any structure of arrays, gathered alike

    def epochs(seed, n=3):
        batches = iter(_shuffled_batches(x, y, 4, seed))
        out = []
        for _ in range(n):
            epoch = [next(batches) for _ in range(3)]  # 4 + 4 + 2 examples
            assert [len(b[0]) for b in epoch] == [4, 4, 2]
            rows = np.concatenate([b[0].numpy()[:, 0] for b in epoch])
            assert np.array_equal(np.concatenate([b[1]["out"].numpy() for b in epoch]), rows * 2)
            out.append(rows)
        return out

    first = epochs(seed=5)
    assert all(sorted(rows) == list(range(10)) for rows in first)
    assert not np.array_equal(first[0], first[1])  # reshuffled every epoch
    assert all(np.array_equal(a, b) for a, b in zip(first, epochs(seed=5)))  # seeded


def test_surface_file_round_trip_and_reference_layout(trained, tmp_path):
    out, _ = trained
    for name in ("model.keras", "trajectory.h5"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    summary = sweep(config_from_dict(TINY), tmp_path, in_process=True, progress=False)
    surfaces = read_surface(tmp_path / "surface.h5")
    assert list(surfaces) == ["random", "pca", "line"]
    rnd, pca, line = surfaces["random"], surfaces["pca"], surfaces["line"]
    assert rnd.values["loss"].shape == (5, 6) and rnd.done.all() and np.isfinite(rnd.values["loss"]).all()
    assert line.values["loss"].shape == (7,) and line.ycoordinates is None
    # the centre is the trained model and the grid's middle column/row crosses it
    traj = read_trajectory(tmp_path / "trajectory.h5")
    np.testing.assert_array_equal(rnd.centre, traj.weights[-1])
    assert rnd.meta["kind"] == "random" and abs(rnd.meta["cosine"]) < 0.1
    assert len(pca.meta["explained_variance_ratio"]) == 2
    assert summary["slices"]["pca"]["explained_variance_ratio"] == pca.meta["explained_variance_ratio"]
    # the path: projected onto the plane, true loss at each checkpoint; the last one is the centre
    assert pca.path.coords.shape == (9, 2)
    np.testing.assert_allclose(pca.path.coords[-1], 0, atol=1e-6)
    assert np.all(np.isfinite(pca.path.values["loss"])) and pca.path.values["loss"].shape == (9,)
    # auto ranges contain the whole path
    assert pca.xcoordinates.min() < pca.path.coords[:, 0].min() < pca.path.coords[:, 0].max() < pca.xcoordinates.max()
    # layout of Li et al.'s scripts: train_loss[j, i] is the loss at (xcoordinates[i], ycoordinates[j])
    with h5py.File(tmp_path / "surface.h5", "r") as f:
        np.testing.assert_array_equal(f["xcoordinates"][:], rnd.xcoordinates)
        np.testing.assert_array_equal(f["ycoordinates"][:], rnd.ycoordinates)
        np.testing.assert_array_equal(f["train_loss"][:], rnd.values["loss"])
    info = read_run_info(tmp_path / "surface.h5")
    assert info["config"]["slices"][0]["name"] == "random" and info["versions"]["tensorflow"]


def test_true_path_loss_equals_the_slice_at_the_centre(trained, tmp_path):
    out, _ = trained
    for name in ("model.keras", "trajectory.h5"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    config = dict(TINY, grid={"x": {"min": -1.0, "max": 1.0, "points": 5},
                              "y": {"min": -1.0, "max": 1.0, "points": 5}, "tile": [5, 5]})
    config["slices"] = [{"name": "random"}]
    sweep(config_from_dict(config), tmp_path, in_process=True, progress=False)
    rnd = read_surface(tmp_path / "surface.h5")["random"]
    assert rnd.values["loss"][2, 2] == pytest.approx(rnd.path.values["loss"][-1], rel=1e-6)


def test_existing_surface_is_not_overwritten(trained, tmp_path, capsys):
    (tmp_path / "surface.h5").write_bytes(b"precious")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(TINY))
    code = main(["sweep", str(cfg), "--out", str(tmp_path), "--in-process", "--no-progress"])
    assert code == 2
    assert (tmp_path / "surface.h5").read_bytes() == b"precious"
    assert capsys.readouterr().err.strip() == (
        f"landscape-dist: error: The surface file '{tmp_path / 'surface.h5'}' already exists. "
        f"Pass --overwrite to replace it, or give another --out.")


def test_cli_bad_setting_exits_non_zero_with_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(TINY))
    code = main(["run", str(cfg), "--out", str(tmp_path / "o"), "grid.x.points=1"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "landscape-dist: error: The 'grid.x.points' setting must be an integer >= 2. Got 1 instead.")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_run_end_to_end_on_ray(ray_cluster, tmp_path, capsys):
    """The command line's run on Ray (the shared test cluster): train, sweep, plot. A local Ray
    started by the command in a fresh process is tested in test_rules_writers.py."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(TINY))
    out = tmp_path / "out"
    code = main(["run", str(cfg), "--out", str(out), "--no-progress", "--json",
                 "cluster.num_workers=1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    summary = json.loads(captured.out)
    images = sorted(Path(p).name for p in summary["images"])
    assert images == ["line_1d.png", "pca_3d.png", "pca_contour.png", "pca_filled.png",
                      "pca_heatmap.png", "pca_path.png", "random_3d.png", "random_contour.png",
                      "random_filled.png", "random_heatmap.png"]
    for name in images:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    surfaces = read_surface(out / "surface.h5")
    assert all(s.done.all() for s in surfaces.values())
    assert not (out / "surface.h5.partial").exists()


@pytest.mark.slow
def test_diverged_points_are_stored_counted_and_masked(tmp_path):
    from landscape_dist.model.reference import evaluate_per_point, points_to_weights
    from landscape_dist.model.sources import DataSpec, ModelSpec
    from landscape_dist.figures.static import contour_levels

    config = config_from_dict({
        "model": {"source": "parabola"}, "data": {"source": "parabola"},
        "grid": {"x": {"min": -1e19, "max": 1e19, "points": 5},
                 "y": {"min": -1.0, "max": 1.0, "points": 3}, "tile": [3, 5]},
        "slices": [{"name": "random"}]})
    summary = sweep(config, tmp_path, in_process=True, progress=False)
    surface = read_surface(tmp_path / "surface.h5")["random"]
    loss = surface.values["loss"]
    bad = ~np.isfinite(loss)
    assert surface.done.all() and 0 < bad.sum() < loss.size
    assert summary["slices"]["random"]["nonfinite_points"] == int(bad.sum())
    # stored as computed: the same points diverge when each is evaluated on its own
    yy, xx = np.meshgrid(surface.ycoordinates, surface.xcoordinates, indexing="ij")
    coords = np.stack([xx.ravel(), yy.ravel()], axis=1)
    ref = evaluate_per_point(ModelSpec.from_source("parabola").build(), *DataSpec("parabola").load(),
                             surface.layout,
                             points_to_weights(surface.centre, surface.directions, coords))
    np.testing.assert_array_equal(bad.ravel(), ~np.isfinite(ref["loss"]))
    np.testing.assert_allclose(loss[~bad], ref["loss"][~bad.ravel()], rtol=1e-5)
    levels = contour_levels(loss, 10)
    assert np.all(np.isfinite(levels)) and levels[0] == loss[~bad].min() and levels[-1] == loss[~bad].max()
    from landscape_dist.figures.static import plot_surface_file
    from landscape_dist.config import PlotConfig

    images = plot_surface_file(tmp_path / "surface.h5", tmp_path, PlotConfig())
    assert [os.path.basename(p) for p in images] == ["random_contour.png", "random_filled.png",
                                                     "random_3d.png", "random_heatmap.png"]


@pytest.mark.slow
def test_live_preview_is_drawn_during_the_sweep(tmp_path, monkeypatch):
    from landscape_dist.figures.live import LivePreview

    fractions = []
    draw = LivePreview.draw

    def counting_draw(self, name):
        fractions.append(float(np.mean(~np.isnan(self._values))))
        draw(self, name)

    monkeypatch.setattr(LivePreview, "draw", counting_draw)
    config = config_from_dict({
        "model": {"source": "parabola"}, "data": {"source": "parabola"},
        "grid": {"x": {"points": 9}, "y": {"points": 9}, "tile": [3, 3]},  # 9 tiles
        "slices": [{"name": "random"}], "plot": {"preview_every_s": 1e-9}})
    summary = sweep(config, tmp_path, in_process=True, progress=False)
    assert (tmp_path / "random_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # redrawn after every tile (the period is tiny), from the first coarse tile to the full grid
    assert len(fractions) == summary["slices"]["random"]["tiles"] + 1
    assert fractions[0] < 0.15 and fractions[-1] == 1.0
