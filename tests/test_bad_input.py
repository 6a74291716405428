"""Bad input: one line naming the setting, the value and the fix; exit 2; nothing written."""

import shutil

import keras
import numpy as np
import pytest
import yaml

from landscape_dist.cli import main
from landscape_dist.execution.cluster import check_reachable

BASE = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
        "train": {"epochs": 1, "record_every": 1, "record_unit": "epoch"},
        "grid": {"x": {"points": 4}, "y": {"points": 3}, "tile": [3, 4]},
        "slices": [{"name": "random"}]}


def _cli(tmp_path, capsys, settings, *args, out="out"):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(settings))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["sweep", str(cfg), "--out", str(tmp_path / out), "--in-process", "--no-progress",
                 *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
    return err[0].removeprefix("landscape-dist: error: ")


def _with(**sections):
    return {**BASE, **sections}


def _npz(tmp_path, name, x, y):
    path = tmp_path / name
    np.savez(path, x=x, y=y)
    return str(path)


def test_missing_model_file(tmp_path, capsys):
    assert _cli(tmp_path, capsys, _with(model={"source": "nowhere.keras"})) == (
        "The 'model.source' setting names 'nowhere.keras', which does not exist. Give the path "
        "of a saved .keras model.")


def test_file_that_is_not_a_keras_model(tmp_path, capsys):
    (tmp_path / "fake.keras").write_bytes(b"not a zip archive")
    source = str(tmp_path / "fake.keras")
    assert _cli(tmp_path, capsys, _with(model={"source": source})) == (
        f"The 'model.source' setting names '{source}', which is not a Keras model file (not a "
        f".keras archive). Give a file saved with model.save('name.keras').")


def test_data_shape_that_does_not_fit_the_model(tmp_path, capsys):
    source = _npz(tmp_path, "d.npz", np.zeros((8, 5), np.float32), np.zeros(8, np.float32))
    assert _cli(tmp_path, capsys, _with(data={"source": source})) == (
        "The 'data.source' setting gives inputs of shape (8, 5), but the model takes "
        f"(None, 1). Give data whose examples have shape (1,), or another model.")


def test_labels_that_do_not_fit_the_loss(tmp_path, capsys):
    source = _npz(tmp_path, "d.npz", np.zeros((8, 8, 8, 1), np.float32), np.arange(8) + 5)
    assert _cli(tmp_path, capsys, _with(model={"source": "digits"}, data={"source": source})) == (
        "The 'data.source' setting gives labels from 5 to 12, but the model has 10 outputs for "
        "the loss 'sparse_categorical_crossentropy'. Give labels in 0..9, or a model with more "
        "outputs.")
    source = _npz(tmp_path, "e.npz", np.zeros((8, 1), np.float32), np.zeros((8, 3), np.float32))
    assert _cli(tmp_path, capsys, _with(data={"source": source})) == (
        "The 'data.source' setting gives labels of shape (8, 3), but the model's output is "
        "(None, 1) for the loss 'mse'. Give one label of shape (1,) per example, or another model.")


def test_empty_dataset(tmp_path, capsys):
    source = _npz(tmp_path, "d.npz", np.zeros((0, 1), np.float32), np.zeros(0, np.float32))
    assert _cli(tmp_path, capsys, _with(data={"source": source})) == (
        f"The data from '{source}' is empty. Give at least one example.")


@pytest.fixture(scope="module")
def short_path(tmp_path_factory):
    """A trained output directory whose path has two checkpoints (one epoch)."""
    out = tmp_path_factory.mktemp("short")
    cfg = out / "c.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    return out


def test_trajectory_with_too_few_checkpoints_for_pca(tmp_path, capsys, short_path):
    out = tmp_path / "out"
    shutil.copytree(short_path, out)
    assert _cli(tmp_path, capsys, _with(slices=[{"name": "p", "directions": {"kind": "pca"}}])) == (
        "The trajectory must hold at least 3 checkpoints for PCA with 2 components. Got 2 "
        "instead. Record more often (train.record_every) or train longer.")


def test_trajectory_from_another_architecture(tmp_path, capsys, short_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(short_path / "trajectory.h5", out / "trajectory.h5")
    settings = _with(model={"source": "digits"}, data={"source": "digits"},
                     slices=[{"name": "p", "directions": {"kind": "pca"}}])
    assert _cli(tmp_path, capsys, settings) == (
        f"The trajectory '{out / 'trajectory.h5'}' was recorded from another architecture (8 "
        f"tensors, 8513 weights) than 'model.source' (6 tensors, 3818 weights). Train this model "
        f"again with the same --out.")


def test_unreachable_cluster_address_fails_fast():
    with pytest.raises(ValueError) as err:
        check_reachable("127.0.0.1:1", timeout_s=5)
    assert str(err.value) == (
        "The 'cluster.address' setting is '127.0.0.1:1', but no Ray cluster answers there "
        "(Connection refused). Start one with 'ray start --head' or give the address 'ray status' "
        "prints on the head node.")
    with pytest.raises(ValueError, match=r"must be 'auto', 'local' or 'host:port'\. Got 'headnode'"):
        check_reachable("headnode", timeout_s=5)


def test_output_path_that_cannot_be_written(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert _cli(tmp_path, capsys, BASE, out="afile/out") == (
        f"The output directory '{tmp_path / 'afile' / 'out'}' cannot be created: "
        f"'{tmp_path / 'afile'}' is a file. Give another --out.")


def _lambda_model(path):
    inputs = keras.Input((1,))
    hidden = keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Dense(4)(inputs))
    outputs = keras.layers.Dense(1)(hidden)  # weights enough for a plane (one would be a line)
    model = keras.Model(inputs, outputs)
    model.compile(loss="mse")
    model.save(path)


def test_model_file_code_runs_only_with_the_opt_in_flag(tmp_path, capsys):
    source = str(tmp_path / "lam.keras")
    _lambda_model(source)
    assert _cli(tmp_path, capsys, _with(model={"source": source})) == (
        f"The model file '{source}' holds code (a Lambda layer) that Keras runs only outside safe "
        f"mode. If you trust the file, set model.unsafe_deserialization=true.")
    cfg = tmp_path / "c.yaml"
    code = main(["sweep", str(cfg), "--out", str(tmp_path / "ok"), "--in-process", "--no-progress",
                 "--allow-unsafe-model-code"])
    assert code == 0 and (tmp_path / "ok" / "surface.h5").is_file()
