"""Hostile input and faults: one line naming the setting and the fix, exit 2, nothing written;
a diverged run still gives a complete, honest surface; nothing is left behind."""

import inspect
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from landscape_dist.cli import main
from landscape_dist.config import ConfigError, config_from_dict, load_config
from landscape_dist.store.journal import TileJournal
from landscape_dist.store.surface import read_surface

BASE = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
        "train": {"epochs": 1, "record_every": 1, "record_unit": "epoch"},
        "grid": {"x": {"points": 4}, "y": {"points": 3}, "tile": [3, 4]},
        "slices": [{"name": "random"}]}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _tree(path: Path):
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


def _cli(tmp_path, capsys, settings, *args, command="sweep", out="out", code=2):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(settings) if isinstance(settings, dict) else settings)
    before = _tree(tmp_path)
    got = main([command, str(cfg), "--out", str(tmp_path / out), *args] +
               (["--in-process", "--no-progress"] if command in ("sweep", "run") else []))
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == 1, err
    assert _tree(tmp_path) == before  # nothing written, nothing changed
    return err[0].removeprefix("landscape-dist: error: ")


# ------------------------------------------------------------------ numbers and sizes

@pytest.mark.parametrize("override, message", [
    ("grid.y.max=.inf", "The 'grid.y.max' setting must be a finite number. Got inf instead."),
    ("grid.x.min=-.inf", "The 'grid.x.min' setting must be a finite number. Got -inf instead."),
    ("train.learning_rate=.nan", "The 'train.learning_rate' setting must be a finite number. Got nan instead."),
    ("evaluation.memory_budget_mb=.inf",
     "The 'evaluation.memory_budget_mb' setting must be a finite number. Got inf instead."),
    ("cluster.cpus_per_worker=.inf",
     "The 'cluster.cpus_per_worker' setting must be a finite number. Got inf instead."),
])
def test_non_finite_numbers_are_refused_in_every_numeric_setting(tmp_path, capsys, override, message):
    assert _cli(tmp_path, capsys, BASE, override) == message


def test_numbers_yaml_reads_as_strings_are_numbers():
    assert load_config(None, ["train.learning_rate=1e6"]).train.learning_rate == 1e6
    assert config_from_dict({"grid": {"x": {"min": "-2e0", "max": "3"}}}).slices[0].grid.x.max == 3.0
    with pytest.raises(ConfigError) as err:
        config_from_dict({"train": {"learning_rate": "fast"}})
    assert str(err.value) == "The 'train.learning_rate' setting must be a number. Got 'fast' instead."


def test_grids_too_large_for_the_disk_or_the_driver_are_refused_before_allocating(tmp_path, capsys):
    message = _cli(tmp_path, capsys, BASE, "grid.x.points=1000000000", "grid.tile=[1,1]")
    assert message.startswith("The grid of slice 'random' (1000000000 x 3 points in tiles of 1 x 1) "
                              "makes 3e+09 tiles, whose bookkeeping needs at least 1.43e+03 GiB of "
                              "the driver's memory, more than half the ")
    assert message.endswith("GiB available. Use larger tiles (grid.tile) or fewer points "
                            "(grid.x.points, grid.y.points).")
    message = _cli(tmp_path, capsys, BASE, "grid.x.points=100000000000", "grid.y.points=20000",
                   "grid.tile=[20000,1000000]")
    assert message.startswith("The grid of slice 'random' (100000000000 x 20000 points) needs a "
                              "surface file of at least 1.68e+07 GiB (9 bytes a point, all slices "
                              "so far), but ")
    assert message.endswith(f"GiB are free under '{tmp_path}'. Use fewer points (grid.x.points, "
                            f"grid.y.points) or another --out.")


# ------------------------------------------------------------------ the configuration file

@pytest.mark.parametrize("overrides, message", [
    (["slices.5=x"], "The override 'slices.5' names list item '5' of 'slices', which has 1 items."),
    (["slices.name=x"], "The override 'slices.name' names 'name' in the list 'slices', whose items "
                        "are numbered from 0: write 'slices.0.name=...'."),
    (["slices.0.grid.x.pionts=3"], "Unknown setting 'slices.0.grid.x.pionts'. Did you mean 'points'?"),
    (["slices.0.grid.x.points=1"],
     "The 'slices.0.grid.x.points' setting must be an integer >= 2. Got 1 instead."),
    (["grid.x.points=[1,"], "The override 'grid.x.points=[1,' has a value that is not valid YAML "
                            "(line 1, column 4: expected the node content, but found '<stream "
                            "end>'). Quote it or fix it."),
])
def test_overrides_and_nested_settings_are_named_where_they_are(tmp_path, capsys, overrides, message):
    assert _cli(tmp_path, capsys, BASE, *overrides) == message


def test_malformed_yaml_names_the_line_and_column(tmp_path, capsys):
    text = "model:\n  source: parabola\ngrid: {x: {points: 4}\nslices: []\n"
    assert _cli(tmp_path, capsys, text) == (
        f"The config file '{tmp_path / 'c.yaml'}' is not valid YAML at line 4, column 1: expected "
        f"',' or '}}', but got '<scalar>'. Fix the file.")


# ------------------------------------------------------------------ data and factories

def _npz(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return str(path)


def test_data_that_is_not_numbers_is_refused(tmp_path, capsys):
    x = np.array([["a"], ["b"], ["c"]])
    source = _npz(tmp_path, x=x, y=np.zeros((3, 1), np.float32))
    assert _cli(tmp_path, capsys, {**BASE, "data": {"source": source}}) == (
        "The 'data.source' setting gives inputs of type <U1, which are not numbers. Give numeric "
        "inputs.")
    source = _npz(tmp_path, x=np.zeros((3, 1), np.float32), y=np.array(["1", "2", "3"]))
    assert _cli(tmp_path, capsys, {**BASE, "data": {"source": source}}) == (
        "The 'data.source' setting gives labels of type <U1, which are not numbers. Give numeric "
        "labels.")


def test_object_arrays_are_not_unpickled(tmp_path, capsys):
    source = _npz(tmp_path, x=np.array([[1.0], ["a"]], dtype=object), y=np.zeros((2, 1)))
    assert _cli(tmp_path, capsys, {**BASE, "data": {"source": source}}) == (
        f"The array 'x' of data file '{source}' holds Python objects (dtype object), which are not "
        f"read for safety. Save numeric arrays.")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert _cli(tmp_path, capsys, {**BASE, "data": {"source": str(tmp_path / "bad.npz")}}) == (
        f"The data file '{tmp_path / 'bad.npz'}' cannot be read as NumPy data (not an .npz or .npy "
        f"file). Give an .npz file or .npy files saved by NumPy.")


def test_nan_or_infinite_data_is_bad_input_with_the_rows_named(tmp_path, capsys):
    x = np.zeros((12, 1), np.float32)
    x[[3, 7, 8, 9, 10, 11]] = np.nan
    source = _npz(tmp_path, x=x, y=np.zeros((12, 1), np.float32))
    assert _cli(tmp_path, capsys, {**BASE, "data": {"source": source}}) == (
        "The 'data.source' setting gives 6 examples whose inputs hold NaN or infinite values "
        "(rows 3, 7, 8, 9, 10, ...). Remove or fix them.")
    y = np.zeros((12, 1), np.float32)
    y[5] = np.inf
    source = _npz(tmp_path, x=np.zeros((12, 1), np.float32), y=y)
    assert _cli(tmp_path, capsys, {**BASE, "data": {"source": source, "shards": 2}}) == (
        "The 'data.source' setting gives 1 example whose labels hold NaN or infinite values "
        "(rows 5). Remove or fix them.")


def test_a_factory_that_raises_is_one_line_naming_it_and_where(tmp_path, capsys):
    from tests import factories

    line = inspect.getsourcelines(factories.failing_data)[1] + 2
    settings = {**BASE, "data": {"source": "tests.factories:failing_data"}}
    assert _cli(tmp_path, capsys, settings) == (
        f"The 'data.source' setting names 'tests.factories:failing_data', which raised "
        f"FileNotFoundError: no such table: examples (at factories.py:{line}). Fix the function or "
        f"give another source.")
    line = inspect.getsourcelines(factories.failing_model)[1] + 2
    settings = {**BASE, "model": {"source": "tests.factories:failing_model"}}
    assert _cli(tmp_path, capsys, settings) == (
        f"The 'model.source' setting names 'tests.factories:failing_model', which raised "
        f"ValueError: units must be positive (at factories.py:{line}). Fix the function or give "
        f"another source.")


# ------------------------------------------------------------------ outputs

def test_an_output_path_that_cannot_exist_is_refused_first(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    for command in ("train", "sweep", "run"):
        args = ["--in-process", "--no-progress"] if command != "train" else []
        assert main([command, str(cfg), "--out", "/proc/landscape/out", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("landscape-dist: error: The output directory '/proc/landscape/out' "
                              "cannot be created in '/proc' (") and err.endswith(
            "). Give another --out."), err


def test_plot_refuses_files_that_are_not_finished_surfaces(tmp_path, capsys):
    (tmp_path / "x.h5").write_bytes(b"plain text, not HDF5")
    assert main(["plot", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"landscape-dist: error: The file '{tmp_path / 'x.h5'}' is damaged or "
                          f"not an HDF5 file (")
    assert err.endswith("). Give a surface.h5 written by 'landscape-dist sweep'.")

    from landscape_dist.callbacks import SweepCallback
    from landscape_dist.commands import sweep

    class Stop(SweepCallback):
        def on_tile_end(self, name, tile, result):
            raise KeyboardInterrupt

    settings = {**BASE, "grid": {"x": {"points": 4}, "y": {"points": 3}, "tile": [1, 4]}}
    with pytest.raises(KeyboardInterrupt):
        sweep(config_from_dict(settings), tmp_path / "o", in_process=True, progress=False,
              callbacks=[Stop()])
    partial = tmp_path / "o" / "surface.h5.partial"
    before = _tree(tmp_path)
    assert main(["plot", str(partial)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"landscape-dist: error: The surface file '{partial}' is of a sweep that has not finished "
        f"(slice 'random': 4 of 12 points done). Run the same 'landscape-dist sweep' again to "
        f"finish it.")
    assert _tree(tmp_path) == before
    assert read_surface(partial, unfinished=True)["random"].done.sum() == 4


def test_train_does_not_replace_what_a_surface_was_made_from(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("model.keras", "trajectory.h5", "surface.h5"):
        (out / name).write_bytes(b"made earlier")
    assert _cli(tmp_path, capsys, BASE, command="train") == (
        f"The output directory '{out}' holds a surface (surface.h5) made from its model.keras and "
        f"trajectory.h5; training again would replace them. Pass --overwrite to train anyway, or "
        f"give another --out.")


# ------------------------------------------------------------------ a diverged run

@pytest.mark.slow
def test_a_diverged_run_still_gives_a_complete_honest_surface(tmp_path, capsys):
    settings = {**BASE, "train": {"epochs": 2, "learning_rate": 1.0e6, "record_every": 2,
                                  "record_unit": "step"},
                "grid": {"x": {"points": 5}, "y": {"points": 4}, "tile": [2, 2]}}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    code = main(["run", str(cfg), "--out", str(out), "--in-process", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    assert "checkpoints that are not finite (steps " in err
    assert re.search(r"the centre weights hold \d+ NaN or infinite values", err)
    surface = read_surface(out / "surface.h5")["random"]
    assert surface.done.all() and np.isnan(surface.values["loss"]).all()
    assert np.isnan(surface.path.coords[1:]).all()  # the diverged checkpoints stay off the plane
    summary = (out / "summary.json").read_text()
    assert '"nonfinite_points": 20' in summary and "NaN" not in summary  # strict JSON
    assert (out / "random_contour.png").read_bytes()[:4] == b"\x89PNG"

    # a PCA slice of the same path is refused in one line before any sweep
    pca = {**settings, "slices": [{"name": "pca", "directions": {"kind": "pca"}}]}
    cfg.write_text(yaml.safe_dump(pca))
    code = main(["sweep", str(cfg), "--out", str(out), "--in-process", "--no-progress",
                 "--overwrite"])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(r"landscape-dist: error: The trajectory must hold at least 3 checkpoints "
                        r"for PCA with 2 components\. Got [12] finite ones? \(the other \d+ are "
                        r"NaN or infinite: the training diverged\) instead\. Record more often "
                        r"\(train\.record_every\) or train longer\.", last), last
    assert read_surface(out / "surface.h5")["random"].done.all()  # the earlier surface is kept


# ------------------------------------------------------------------ interruptions and leftovers

def _wait_for_tiles(proc, journal: Path, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if journal.exists() and len(TileJournal.read(journal)[1]) >= count:
                return
        except FileNotFoundError:  # the sweep ended and removed its journal meanwhile
            break
        time.sleep(0.05)
    raise AssertionError("the sweep ended before it could be interrupted")


@pytest.mark.slow
def test_ctrl_c_is_one_line_with_the_tiles_kept(tmp_path):
    # one point per tile, many tiles: the sweep cannot end before it is interrupted
    settings = {**BASE, "grid": {"x": {"points": 80}, "y": {"points": 60}, "tile": [1, 1]}}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "landscape_dist.cli", "sweep", str(cfg), "--out",
                             str(out), "--in-process", "--no-progress"], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_tiles(proc, out / "surface.h5.journal", 30)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    kept = sum(r[0] == "tile" for r in TileJournal.read(out / "surface.h5.journal")[1])
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (
        f"landscape-dist: interrupted; {kept} of 4800 tiles are kept in "
        f"{out / 'surface.h5.journal'}. Run the same command again to resume.")
    assert "Traceback" not in err


def test_the_command_line_starts_without_tensorflow_or_ray():
    code = ("import sys, landscape_dist.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('tensorflow', 'ray', 'keras', 'sklearn') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                          timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_ray_workers_remove_their_temporary_files(ray_cluster):
    from landscape_dist.execution import RayPool
    from landscape_dist.model.sources import DataSpec, ModelSpec

    config = config_from_dict({**BASE, "cluster": {"num_workers": 1}})
    pool = RayPool(ModelSpec.from_source("parabola"), DataSpec("parabola"), config.evaluation,
                   config.cluster)
    try:
        tmp = next(iter(pool.info.values()))["tmp"]
        assert tmp and Path(tmp).is_dir()
        pool.set_plane(np.zeros(8513, np.float32), np.ones((2, 8513), np.float32), [])
        from landscape_dist.execution import Job

        pool.run([Job(0, "coords", np.zeros((3, 2), np.float32))], lambda k, r: None)
    finally:
        pool.close()
    assert not Path(tmp).exists()


def test_a_recording_too_large_for_the_disk_is_refused_before_training(tmp_path, capsys):
    message = _cli(tmp_path, capsys, BASE, "train.epochs=100000000000", "train.record_unit=step",
                   command="train")
    assert message.startswith("The training path would record 800000000002 checkpoints of 8513 "
                              "weights (2.54e+07 GiB), but ")
    assert message.endswith(f"GiB are free under '{tmp_path}'. Raise train.record_every, lower "
                            f"train.epochs, or give another --out.")


@pytest.mark.parametrize("override, message", [
    ("plot.levels=1000000000", "The 'plot.levels' setting must be an integer from 2 to 1000. Got "
                               "1000000000 instead."),
    ("plot.dpi=100000", "The 'plot.dpi' setting must be an integer from 10 to 1200. Got 100000 "
                        "instead."),
])
def test_plot_sizes_are_bounded(tmp_path, capsys, override, message):
    assert _cli(tmp_path, capsys, BASE, override) == message
