"""A Ray sweep's planes prepared by a worker beside the driver (which then never imports
TensorFlow), and the relay that makes that call look as if it had been made in the driver."""

import logging
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from landscape_dist.config import config_from_dict
from landscape_dist.errors import FilterRuleWarning, SourceError
from landscape_dist.execution.relay import Answer, answer
from landscape_dist.execution.worker import LandscapeWorker
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface
from landscape_dist.sweeping.inputs import prepare_portable

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
SETTINGS = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
            "grid": {"x": {"points": 7}, "y": {"points": 5}, "tile": [3, 3]},
            "slices": [{"name": "random", "directions": {"seed": 3}}],
            "cluster": {"num_workers": 1}}

log = logging.getLogger("landscape_dist")


class _KerasLikeError(ValueError):
    """An error class of a module the caller may not have imported."""


def _busy(x):
    log.warning("the centre holds %d NaN values", 3)
    warnings.warn("the filters of custom/mixing are taken along the last axis", FilterRuleWarning)
    return x * 2


def _refuse(err):
    raise err


def test_an_answer_relays_the_value_warnings_and_log_records_when_delivered(caplog):
    caplog.set_level(logging.INFO, logger="landscape_dist")
    reply = answer(_busy, 21)
    assert reply.value == 42 and not caplog.records  # nothing emitted while answering
    assert log.propagate and log.level == logging.INFO  # the logger as it was
    with pytest.warns(FilterRuleWarning, match="custom/mixing are taken along the last axis"):
        assert reply.deliver() == 42
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "the centre holds 3 NaN values")]


def test_errors_come_back_as_themselves_or_as_their_nearest_portable_class():
    ours = SourceError("The {model} names 'x.keras', which does not exist.", model="'source' parameter")
    delivered = answer(_refuse, ours).error
    assert type(delivered) is SourceError and str(delivered) == str(ours)
    assert str(delivered.reworded({"model": "'model.source' setting"})) == (
        "The 'model.source' setting names 'x.keras', which does not exist.")
    foreign = answer(_refuse, _KerasLikeError("Received: units=-1")).error
    assert type(foreign) is ValueError and str(foreign) == "Received: units=-1"
    missing = answer(_refuse, FileNotFoundError(2, "No such file", "/x")).error
    assert type(missing) is FileNotFoundError and str(missing) == "[Errno 2] No such file: '/x'"
    with pytest.raises(SourceError, match="which does not exist"):
        Answer(error=delivered).deliver()


def test_an_answer_unpickles_where_tensorflow_was_never_imported(tmp_path):
    reply = answer(_busy, np.arange(3))
    reply.error = answer(_refuse, SourceError("The {model} is empty.", model="'source' parameter")).error
    (tmp_path / "answer.pkl").write_bytes(pickle.dumps(reply))
    code = ("import pickle, sys\n"
            f"reply = pickle.loads(open({str(tmp_path / 'answer.pkl')!r}, 'rb').read())\n"
            "print(reply.warned[0][0].__name__, type(reply.error).__name__, reply.value.tolist(),\n"
            "      sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "FilterRuleWarning SourceError [0, 2, 4] []", proc.stderr


def test_a_worker_prepares_in_the_callers_directory_and_only_on_the_callers_node(
        ray_cluster, tmp_path, monkeypatch):
    config = config_from_dict(SETTINGS)
    worker = LandscapeWorker(ModelSpec.from_source("parabola"), DataSpec("parabola"),
                             config.evaluation)
    node = ray_cluster.get_runtime_context().get_node_id()
    here = os.getcwd()
    target = prepare_portable
    assert worker.call(target, (config, Path("out")), str(tmp_path), "another node") is None
    inputs = worker.call(target, (config, Path("out")), str(tmp_path), node).deliver()
    assert os.getcwd() == here
    expected = prepare_portable(config, tmp_path / "out")
    np.testing.assert_array_equal(inputs.slices[0].plane.directions,
                                  expected.slices[0].plane.directions)
    np.testing.assert_array_equal(inputs.context.centre, expected.context.centre)
    assert inputs.fingerprint(config) == expected.fingerprint(config)

    # bad input found while the worker prepares: the error the driver would have raised
    import keras

    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.compile(loss="mse")
    other.save(tmp_path / "other.keras")
    wrong = config_from_dict({**SETTINGS, "model": {"source": "parabola", "centre": "other.keras"}})
    reply = worker.call(target, (wrong, Path("out")), str(tmp_path), node)
    with pytest.raises(SourceError) as beside_err:
        reply.deliver()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError) as here_err:
        prepare_portable(wrong, Path("out"))
    assert str(beside_err.value) == str(here_err.value)
    assert "which has another architecture than the model" in str(here_err.value)


def _cli(tmp_path, settings, *extra):
    """``landscape-dist sweep`` on a local Ray started by the command, run from ``tmp_path``
    with relative paths: what it printed (its exit code and the heavy modules its driver holds
    at the end), its last line on stderr, and the whole of its stderr."""
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(settings))
    code = ("import sys\nfrom landscape_dist.cli import main\n"
            f"code = main(['sweep', 'c.yaml', '--out', 'out', '--no-progress', *{list(extra)!r}])\n"
            "print(code, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    return proc.stdout.strip(), lines[-1] if lines else "", proc.stderr


@pytest.mark.slow
def test_a_ray_sweep_from_the_command_line_prepares_beside_its_driver(tmp_path):
    printed, _, err = _cli(tmp_path, SETTINGS)
    assert printed == "0 []", err  # done, and the driver never imported TensorFlow or Keras
    sweep(config_from_dict(SETTINGS), tmp_path / "whole", in_process=True, progress=False)
    beside = read_surface(tmp_path / "out" / "surface.h5")["random"]
    whole = read_surface(tmp_path / "whole" / "surface.h5")["random"]
    assert beside.done.all()
    np.testing.assert_allclose(beside.values["loss"], whole.values["loss"], rtol=1e-6)


@pytest.mark.slow
def test_a_worker_imports_tensorflow_without_kerass_optional_integrations():
    code = ("import sys\n"
            "from landscape_dist.execution.worker import import_tensorflow_lean\n"
            "import_tensorflow_lean()\n"
            "import keras\n"
            "print(sorted(m for m in ('sklearn', 'matplotlib', 'IPython') if m in sys.modules))\n"
            "from sklearn.datasets import load_digits\n"  # still importable by the worker itself
            "print(load_digits().data.shape, keras.layers.Dense(2)(keras.ops.ones((1, 3))).shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=ENV)
    assert proc.stdout.split("\n")[:2] == ["[]", "(1797, 64) (1, 2)"], proc.stderr[-2000:]
