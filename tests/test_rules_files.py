"""Rules for the files the tool reads: a damaged surface, journal or trajectory file is named as
damaged in one line (exit 2, nothing written); configuration files that are empty, repeat a key,
nest without end, hold a list, or come through a pipe; choices, seeds and ``wait-cluster``'s
arguments checked before anything runs."""

import os
from pathlib import Path

import h5py
import pytest
import yaml

from landscape_dist.callbacks import SweepCallback
from landscape_dist.cli import main
from landscape_dist.config import ConfigError, config_from_dict, load_config
from landscape_dist.model.trajectory import read_trajectory
from landscape_dist.errors import SourceError

BASE = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
        "grid": {"x": {"points": 4}, "y": {"points": 3}, "tile": [1, 4]},
        "slices": [{"name": "random"}]}
FIX = "Give a surface.h5 written by 'landscape-dist sweep'."


def _tree(path: Path):
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*"))


def _one_line(capsys, tmp_path, argv, code=2) -> str:
    """Run the CLI; it must exit ``code`` with one line on stderr and change nothing in
    ``tmp_path``; returns the line without its prefix."""
    before = _tree(tmp_path)
    got = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code and len(err) == 1, err
    assert _tree(tmp_path) == before
    return err[0].removeprefix("landscape-dist: error: ")


@pytest.fixture(scope="module")
def surface_file(tmp_path_factory) -> Path:
    """A real, finished surface file of a tiny sweep (in process)."""
    from landscape_dist.commands import sweep

    out = tmp_path_factory.mktemp("good")
    sweep(config_from_dict(BASE), out, in_process=True, progress=False)
    return out / "surface.h5"


def _damaged(kind: str, good: Path, path: Path) -> str:
    """Write a damaged copy of ``good`` at ``path``; the reason the message gives."""
    data = good.read_bytes()
    n = len(data)
    if kind == "half":
        path.write_bytes(data[:n // 2])
        return (f"is damaged or not an HDF5 file (truncated file: eof = {n // 2}, "
                f"sblock->base_addr = 0, stored_eof = {n}). {FIX}")
    if kind == "middle":  # bytes of a dataset: its chunk's checksum no longer matches
        middle = bytearray(data)
        middle[n // 2:n // 2 + 256] = b"\xff" * 256
        path.write_bytes(bytes(middle))
        return f"is damaged or not an HDF5 file (filter returned failure during read). {FIX}"
    if kind == "metadata":  # the bytes right after the superblock: the root group's header
        head = bytearray(data)
        head[48:48 + 64] = b"\xff" * 64
        path.write_bytes(bytes(head))
        return None
    if kind == "empty":
        path.write_bytes(b"")
        return f"is damaged or not an HDF5 file (file signature not found). {FIX}"
    if kind == "text":
        path.write_text("not HDF5 at all\n")
        return f"is damaged or not an HDF5 file (file signature not found). {FIX}"
    if kind == "directory":
        path.mkdir()
        return None
    raise AssertionError(kind)


@pytest.mark.parametrize("command", ["info", "plot"])
@pytest.mark.parametrize("kind", ["half", "middle", "metadata", "empty", "text", "directory"])
def test_a_damaged_surface_file_is_named_as_damaged(surface_file, tmp_path, capsys, command,
                                                    kind):
    path = tmp_path / "surface.h5"
    reason = _damaged(kind, surface_file, path)
    line = _one_line(capsys, tmp_path, [command, str(path)])
    if kind == "directory":
        assert line == f"The surface file '{path}' is a directory, not a file. {FIX}"
    elif kind == "metadata":
        assert line.startswith(f"The file '{path}' is damaged or not an HDF5 file (")
        assert line.endswith(f"). {FIX}")
    else:
        assert line == f"The file '{path}' {reason}"


def test_an_hdf5_file_that_is_not_a_surface_is_named_as_such(tmp_path, capsys):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = [1, 2]
    for command in ("info", "plot"):
        assert _one_line(capsys, tmp_path, [command, str(path)]) == (
            f"The file '{path}' is not a landscape_dist surface file. {FIX}")


def test_a_missing_surface_file_is_named(tmp_path, capsys):
    path = tmp_path / "nothing.h5"
    assert _one_line(capsys, tmp_path, ["info", str(path)]) == (
        f"The surface file '{path}' does not exist. {FIX}")


@pytest.mark.parametrize("kind", ["half", "empty", "text", "directory"])
def test_a_damaged_trajectory_file_is_named_as_damaged(surface_file, tmp_path, kind):
    path = tmp_path / "trajectory.h5"
    _damaged(kind, surface_file, path)
    fix = "Record it again (train())."
    with pytest.raises(SourceError) as err:
        read_trajectory(path)
    if kind == "directory":
        assert str(err.value) == f"The trajectory file '{path}' is a directory, not a file. {fix}"
    else:
        assert str(err.value).startswith(f"The file '{path}' is damaged or not an HDF5 file (")
        assert str(err.value).endswith(f"). {fix}")


def test_a_surface_file_read_as_a_trajectory_is_named_as_not_one(surface_file):
    with pytest.raises(SourceError) as err:
        read_trajectory(surface_file)
    assert str(err.value) == (f"The file '{surface_file}' is not a trajectory file (it holds no "
                              f"recorded weights). Record one (train()).")


def test_a_damaged_trajectory_read_by_a_sweep_is_named_as_damaged(surface_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    data = surface_file.read_bytes()
    (out / "trajectory.h5").write_bytes(data[:1000])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**BASE, "slices": [{"name": "p", "directions": {"kind": "pca"}}]}))
    assert _one_line(capsys, tmp_path, ["sweep", str(cfg), "--out", str(out), "--in-process",
                                        "--no-progress"]) == (
        f"The file '{out / 'trajectory.h5'}' is damaged or not an HDF5 file (truncated file: "
        f"eof = 1000, sblock->base_addr = 0, stored_eof = {len(data)}). Record it again "
        f"('landscape-dist train' (or 'run')).")


# ------------------------------------------------------------------ the resume journal

class _Stop(SweepCallback):
    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_tile_end(self, name, tile, result):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt


def test_a_damaged_journal_is_named_and_a_cut_one_resumes(tmp_path, capsys):
    from landscape_dist.commands import sweep

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        sweep(config_from_dict(BASE), out, in_process=True, progress=False, callbacks=[_Stop(2)])
    journal = out / "surface.h5.journal"
    whole = journal.read_bytes()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    argv = ["sweep", str(cfg), "--out", str(out), "--in-process", "--no-progress"]
    fix = "Pass --overwrite to start the sweep again, or give another --out."

    flipped = bytearray(whole)
    flipped[40] ^= 0xFF  # inside the first record (the fingerprint), others follow it
    journal.write_bytes(bytes(flipped))
    assert _one_line(capsys, tmp_path, argv) == (
        f"The file '{journal}' is damaged (the record at byte 0 fails its checksum). {fix}")

    journal.write_bytes(whole + b"garbage, not a record")
    assert _one_line(capsys, tmp_path, argv) == (
        f"The file '{journal}' is damaged (no record starts at byte {len(whole)}). {fix}")

    journal.unlink()
    journal.mkdir()
    assert _one_line(capsys, tmp_path, argv) == (
        f"The resume journal '{journal}' is a directory, not a file. {fix}")
    journal.rmdir()

    journal.write_bytes(whole[:-7])  # the last record cut short by a kill: resumed, not refused
    assert main(argv) == 0
    assert (out / "surface.h5").is_file() and not journal.exists()


# ------------------------------------------------------------------ configuration files

def _config_line(tmp_path, capsys, text: str) -> str:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    return _one_line(capsys, tmp_path, ["sweep", str(cfg), "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("text, message", [
    ("", "is empty (it holds no settings). Give a mapping of settings, for example "
         "'model: {source: parabola}'."),
    ("# only a comment\n", "is empty (it holds no settings). Give a mapping of settings, for "
                           "example 'model: {source: parabola}'."),
    ("- model\n- data\n", "must hold a mapping of settings. Got list instead."),
    ("model: {source: parabola}\ngrid: {x: {points: 3}}\ngrid: {y: {points: 4}}\n",
     "gives the setting 'grid' twice (lines 2 and 3); YAML would keep the last silently. Keep one."),
    ("grid:\n  x:\n    points: 3\n    points: 5\n",
     "gives the setting 'grid.x.points' twice (lines 3 and 4); YAML would keep the last "
     "silently. Keep one."),
    ("model: " + "[" * 3000 + "]" * 3000 + "\n",
     "nests too deeply for a configuration (settings sit at most 32 levels deep). Fix it."),
    ("model: &m {source: *m}\n", "holds a value that contains itself (an alias inside its own "
                                  "anchor, at 'model.source'). Fix it."),
    ("slices:\n  - name: a\n    name: b\n", "gives the setting 'slices.0.name' twice (lines 2 "
                                            "and 3); YAML would keep the last silently. Keep one."),
    ("model: " + "[" * 40 + "]" * 40 + "\n",
     "nests deeper than 32 levels (at line 1); settings sit a few levels deep. Fix it."),
])
def test_a_config_file_that_is_no_mapping_of_settings_is_refused(tmp_path, capsys, text, message):
    assert _config_line(tmp_path, capsys, text) == f"The config file '{tmp_path / 'c.yaml'}' {message}"


def test_a_directory_given_as_the_config_file_is_named(tmp_path, capsys):
    (tmp_path / "c.yaml").mkdir()
    assert _one_line(capsys, tmp_path, ["sweep", str(tmp_path / "c.yaml"), "--out",
                                        str(tmp_path / "out")]) == (
        f"The config file '{tmp_path / 'c.yaml'}' is a directory, not a file. Give the path of a "
        f"YAML file, for example configs/parabola.yaml.")


def test_a_config_given_as_a_pipe_is_read_once():
    read, write = os.pipe()
    with os.fdopen(write, "w") as f:
        f.write("grid: {x: {points: 5}, y: null}\n")
    try:
        config = load_config(f"/dev/fd/{read}")
    finally:
        os.close(read)
    assert config.slices[0].grid.x.points == 5 and config.slices[0].grid.y is None


def test_an_override_nesting_without_end_is_one_line():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["model=" + "[" * 3000 + "]" * 3000])
    assert str(err.value) == ("The override of 'model' nests too deeply for a configuration "
                              "(settings sit at most 32 levels deep). Fix it.")


@pytest.mark.parametrize("settings, message", [
    ({"slices": [{"name": "a", "directions": {"normalization": 3}}]},
     "The 'slices.0.directions.normalization' setting must be one of ('filter', 'layer', "
     "'model', 'none'). Got 3 instead."),
    ({"grid": {"order": 3}}, "The 'grid.order' setting must be one of ('coarse_to_fine', "
                             "'rows'). Got 3 instead."),
    ({"grid": {"x": {"spacing": 1.5}}}, "The 'grid.x.spacing' setting must be one of "
                                        "('linear', 'cubic'). Got 1.5 instead."),
    ({"evaluation": {"mode": True}}, "The 'evaluation.mode' setting must be one of ('auto', "
                                     "'vectorized', 'loop'). Got True instead."),
    ({"train": {"record_unit": 2}}, "The 'train.record_unit' setting must be one of ('epoch', "
                                    "'step'). Got 2 instead."),
    ({"slices": [{"name": 3}]}, "The 'slices.0.name' setting must be a string. Got 3 instead."),
])
def test_a_choice_given_another_type_lists_the_choices(tmp_path, capsys, settings, message):
    assert _config_line(tmp_path, capsys, yaml.safe_dump(settings)) == message


@pytest.mark.parametrize("key, hint", [
    ("grd", "Did you mean 'grid'?"), ("slicez", "Did you mean 'slices'?"),
    ("zzzz", "Known settings: model, data, train, grid, slices, cluster, evaluation, plot, "
             "curvature, sharpness."),
])
def test_unknown_top_level_settings_are_suggested_from_every_one(tmp_path, capsys, key, hint):
    assert _config_line(tmp_path, capsys, f"{key}: 1\n") == f"Unknown setting '{key}'. {hint}"


@pytest.mark.parametrize("settings, setting, value", [
    ({"slices": [{"name": "a", "directions": {"seed": -1}}]}, "slices.0.directions.seed", -1),
    ({"train": {"seed": -2}}, "train.seed", -2),
    ({"curvature": {"seed": -3}}, "curvature.seed", -3),
    ({"evaluation": {"lanczos_seed": -4}}, "evaluation.lanczos_seed", -4),
    ({"evaluation": {"examples_seed": -5}}, "evaluation.examples_seed", -5),
    ({"slices": [{"name": "h", "directions": {"kind": "hessian", "seed": -6}}]},
     "slices.0.directions.seed", -6),
])
def test_a_negative_seed_is_refused_naming_the_setting(tmp_path, capsys, settings, setting, value):
    assert _config_line(tmp_path, capsys, yaml.safe_dump(settings)) == (
        f"The '{setting}' setting must be an integer >= 0. Got {value} instead. Give a seed of "
        f"0 or more.")


def test_negative_seeds_in_a_list_are_refused(tmp_path, capsys):
    settings = {"slices": [{"name": "a", "directions": {"seeds": [1, -2]}}]}
    assert _config_line(tmp_path, capsys, yaml.safe_dump(settings)) == (
        "The 'slices.0.directions.seeds' setting must be a list of integers >= 0. Got [1, -2] "
        "instead. Give a seed of 0 or more.")


# ------------------------------------------------------------------ wait-cluster

@pytest.mark.parametrize("args, message", [
    (["nohost"], "The 'address' argument must be 'auto' or 'host:port' (the head's address "
                 "that 'ray start --head' prints). Got 'nohost' instead."),
    (["head:0"], "The 'address' argument must be 'auto' or 'host:port' (the head's address "
                 "that 'ray start --head' prints). Got 'head:0' instead."),
    (["auto", "--nodes", "0"], "The --nodes option must be an integer >= 1. Got 0 instead. "
                               "Give the number of nodes to wait for, the head included."),
    (["auto", "--timeout", "-1"], "The --timeout option must be a finite number of seconds > 0. "
                                  "Got -1.0 instead. Give how long to wait, for example 300."),
    (["auto", "--timeout", "inf"], "The --timeout option must be a finite number of seconds > 0. "
                                   "Got inf instead. Give how long to wait, for example 300."),
])
def test_wait_cluster_checks_its_arguments_before_it_waits(tmp_path, capsys, args, message):
    assert _one_line(capsys, tmp_path, ["wait-cluster", *args]) == message


def test_wait_cluster_names_its_own_option_when_the_time_runs_out(tmp_path, capsys):
    assert _one_line(capsys, tmp_path, ["wait-cluster", "127.0.0.1:9", "--timeout", "0.5"]) == (
        "The Ray head at '127.0.0.1:9' did not answer within 0.5 s. Check the head's log, or "
        "wait longer (the --timeout option).")
