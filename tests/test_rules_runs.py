"""Rules 6, 7 and 11: resume only the same work; what cannot run is refused in one line, the
same on Ray and in process; workers run the driver's landscape_dist on TensorFlow."""

import importlib
import os
import subprocess
import sys

import pytest
import yaml

from landscape_dist.callbacks import SweepCallback
from landscape_dist.cli import FLAGS
from landscape_dist.commands import sweep
from landscape_dist.config import config_from_dict
from landscape_dist.config.schema import ClusterConfig, EvaluationConfig
from landscape_dist.errors import TileError
from landscape_dist.execution import InProcessPool
from landscape_dist.execution.pool import WorkerPool
from landscape_dist.model.sources import DataSpec, ModelSpec

GRID = {"x": {"min": -1.0, "max": 1.0, "points": 4}, "y": {"min": -1.0, "max": 1.0, "points": 3},
        "tile": [2, 3]}

SOURCES = '''
import keras
import numpy as np

from landscape_dist.model.examples import parabola_data, parabola_model

SCALE = 1.0
ACTIVATION = "relu"


def data():
    x, y = parabola_data(64)
    return x, y * SCALE


def model():
    inputs = keras.Input((1,))
    hidden = keras.layers.Dense(4, activation=ACTIVATION,
                                kernel_initializer=keras.initializers.GlorotUniform(seed=1))(inputs)
    out = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed=2))(hidden)
    built = keras.Model(inputs, out)
    built.compile(loss="mse")
    return built


def frozen():
    built = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    built.layers[0].trainable = False
    built.compile(loss="mse")
    return built
'''


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """A module ``rules_sources`` of model and data functions, importable from the cwd."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "rules_sources.py").write_text(SOURCES)
    monkeypatch.chdir(home)
    monkeypatch.syspath_prepend(str(home))
    sys.modules.pop("rules_sources", None)
    module = importlib.import_module("rules_sources")
    yield module
    sys.modules.pop("rules_sources", None)


def _config(**sections):
    data = {"model": {"source": "parabola"}, "data": {"source": "parabola"}, "grid": GRID,
            "slices": [{"name": "random", "directions": {"seed": 4}}], **sections}
    return config_from_dict(yaml.safe_load(yaml.safe_dump(data)))


class _Interrupt(Exception):
    pass


class _StopAfterFirst(SweepCallback):
    def on_tile_end(self, name, tile, result):
        raise _Interrupt


def _listing(path):
    return sorted((p.relative_to(path).as_posix(), p.stat().st_size) for p in path.rglob("*"))


def _interrupted(config, out):
    with pytest.raises(_Interrupt):
        sweep(config, out, in_process=True, progress=False, callbacks=[_StopAfterFirst()])
    return _listing(out), (out / "surface.h5.journal").read_bytes()


def _refusal(config, out, what, source, old, new):
    with pytest.raises(ValueError) as err:
        sweep(config, out, in_process=True, progress=False)
    expected = (f"The unfinished sweep in '{out}' was started with another configuration "
                f"({what}.returns.{source}: {old!r} -> {new!r}). Rerun with the same settings to "
                f"resume it, pass --overwrite to start again, or give another --out.")
    assert str(err.value.reworded(FLAGS)) == expected


# ---------------------------------------------------------------- rule 6


def test_a_changed_data_function_is_refused_and_an_unchanged_one_resumes(sources, tmp_path):
    config = _config(data={"source": "rules_sources:data"})
    out = tmp_path / "out"
    old = DataSpec("rules_sources:data").content_digest()
    listing, journal = _interrupted(config, out)
    sources.SCALE = 10.0  # the same settings, other data: losses ~10x
    new = DataSpec("rules_sources:data").content_digest()
    assert new != old
    _refusal(config, out, "data", "rules_sources:data", old, new)
    assert _listing(out) == listing and (out / "surface.h5.journal").read_bytes() == journal
    sources.SCALE = 1.0
    info = sweep(config, out, in_process=True, progress=False)["slices"]["random"]
    assert (info["tiles_resumed"], info["tiles_computed"]) == (1, info["tiles"] - 1)


def test_the_data_digest_does_not_depend_on_the_shards_or_the_subset(sources):
    whole = DataSpec("rules_sources:data").content_digest()
    assert DataSpec("rules_sources:data", num_shards=3).content_digest() == whole
    assert DataSpec("rules_sources:data", examples=5).content_digest() == whole


def test_a_changed_model_function_is_refused(sources, tmp_path):
    config = _config(model={"source": "rules_sources:model"})
    out = tmp_path / "out"
    old = ModelSpec.from_source("rules_sources:model").content_digest()
    assert ModelSpec.from_source("rules_sources:model").content_digest() == old  # stable
    listing, _ = _interrupted(config, out)
    sources.ACTIVATION = "tanh"  # the same weights, another architecture
    new = ModelSpec.from_source("rules_sources:model").content_digest()
    _refusal(config, out, "model", "rules_sources:model", old, new)
    assert _listing(out) == listing
    sources.ACTIVATION = "relu"
    info = sweep(config, out, in_process=True, progress=False)["slices"]["random"]
    assert info["tiles_resumed"] == 1


# ---------------------------------------------------------------- rule 7

NO_WEIGHTS = ("The {} names a model with no trainable weights ('rules_sources:frozen' has only 2 "
              "frozen ones). Give a model with at least one trainable layer, or set "
              "layer.trainable = True on the layers to explore.")


def _frozen_spec(sources):
    return ModelSpec("rules_sources:frozen", None, False, os.path.dirname(sources.__file__))


def test_a_model_without_trainable_weights_is_refused_by_the_sweep(sources, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError) as err:
        sweep(_config(model={"source": "rules_sources:frozen"}), out, in_process=True,
              progress=False)
    assert str(err.value) == NO_WEIGHTS.format("'model.source' setting")
    assert not out.exists()


def test_a_model_without_trainable_weights_is_refused_the_same_on_ray(sources, ray_cluster):
    from landscape_dist.execution import RayPool

    with pytest.raises(ValueError) as local:
        InProcessPool(_frozen_spec(sources), DataSpec("parabola"), EvaluationConfig())
    with pytest.raises(ValueError) as remote:
        RayPool(_frozen_spec(sources), DataSpec("parabola"), EvaluationConfig(),
                ClusterConfig(num_workers=1, cpus_per_worker=1))
    assert str(local.value) == str(remote.value) == NO_WEIGHTS.format("'source' parameter")


class _Future:
    count = 0

    def __init__(self, value):
        _Future.count += 1
        self.key, self.value = _Future.count, value

    def __hash__(self):
        return self.key


class _Actor:
    """A fake actor: its ``ready`` fails with Ray's OutOfMemoryError while ``fails`` says so."""

    def __init__(self, outcome):
        self.outcome, self.calls = outcome, []
        for name in ("ready", "set_plane", "select_quantities", "close"):
            setattr(self, name, self._method(name))

    def _method(self, name):
        class Method:
            @staticmethod
            def remote(*args):
                self.calls.append(name)
                return _Future(self.outcome if name == "ready" else True)
        return Method


class _ActorClass:
    def __init__(self, failures):
        self.failures, self.started = failures, []

    def remote(self, blob, shard, quantities):
        from ray.exceptions import OutOfMemoryError

        if len(self.started) < self.failures:
            outcome = OutOfMemoryError(
                "1 worker(s) were killed due to the node running low on memory. Memory on the "
                "node (IP: 10.0.0.1, ID: abc) was 7.40GB used / 7.70GB limit (0.961) "
                "(actor ID: 1, name=LandscapeWorker, pid=42, actual memory used=1.50GB, worker "
                "ID=ff)")
        else:
            from landscape_dist.core.quantities import QuantitySet

            outcome = {"pid": 1, "node": None, "quantities": QuantitySet(()), "described": {},
                       "sizes": {"": 8}}
        self.started.append(_Actor(outcome))
        return self.started[-1]


class _FakeRay:
    killed: list = []

    def put(self, value):
        return value

    def get(self, future, timeout=None):
        if isinstance(future.value, BaseException):
            raise future.value
        return future.value

    def wait(self, futures, num_returns=1, timeout=None):
        return futures[:num_returns], futures[num_returns:]

    def kill(self, actor):
        self.killed.append(actor)


def _fake_pool(failures):
    from landscape_dist.execution.ray_pool import RayBackend

    actors = _ActorClass(failures)
    backend = RayBackend(actors, (), ("loss",), ray=_FakeRay(), retry_pause_s=0.0)
    return WorkerPool(backend, ClusterConfig(num_workers=1), 1, 1, wait=False), actors


def test_a_worker_short_of_memory_once_is_started_again():
    pool, actors = _fake_pool(failures=1)
    pool.backend.send(pool.scheduler.handles[0], "select_quantities", ("loss",))  # before ready
    pool.wait_ready()
    assert len(actors.started) == 2 and pool.sizes == {"": [8]}
    assert actors.started[1].calls == ["select_quantities", "ready"]  # sent again, in order
    handle = pool.scheduler.handles[0]
    pool.backend.send(handle, "close")
    assert actors.started[1].calls[-1] == "close"  # the handle's calls go to the new actor


def test_a_worker_short_of_memory_twice_is_one_line():
    pool, actors = _fake_pool(failures=2)
    with pytest.raises(TileError) as err:
        pool.wait_ready()
    assert len(actors.started) == 2
    assert str(err.value) == (
        "A worker failed to start: its node ran out of memory while it started, twice (the "
        "worker held 1.5 GB when 0.3 GB of the node's 7.7 GB were free). Lower "
        "cluster.num_workers, evaluation.memory_budget_mb or the data each worker holds "
        "(evaluation.examples, data.shards), or run on nodes with more memory.")


# ---------------------------------------------------------------- rule 11


def test_ray_workers_import_the_drivers_landscape_dist(ray_cluster):
    from landscape_dist.execution import RayPool
    from landscape_dist.execution.ray_pool import _package_dir

    pool = RayPool(ModelSpec.from_source("parabola"), DataSpec("parabola"), EvaluationConfig(),
                   ClusterConfig(num_workers=1, cpus_per_worker=1))
    try:
        handle = pool.scheduler.handles[0]
        node = pool.info[handle]["node"]
        answer = pool.backend.result(pool.backend.send(handle, "call", _package_dir, (),
                                                       os.getcwd(), node))
        assert answer.deliver() == _package_dir()
    finally:
        pool.close()


def test_a_shell_with_another_keras_backend_still_sweeps(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"model": {"source": "parabola"}, "grid": GRID}))
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "landscape_dist.cli", "sweep", str(config),
                           "--out", str(tmp_path / "out"), "--in-process", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out" / "surface.h5").is_file()


def test_a_session_with_keras_on_another_backend_is_told_in_one_line(monkeypatch):
    from landscape_dist.errors import LandscapeError
    from landscape_dist.model.runtime import check_keras_backend

    class Config:
        @staticmethod
        def backend():
            return "jax"

    monkeypatch.setitem(sys.modules, "keras", type("Keras", (), {"config": Config})())
    with pytest.raises(LandscapeError) as err:
        ModelSpec.from_source("parabola").build()
    assert str(err.value) == (
        "Keras was imported in this Python session with the 'jax' backend, but landscape_dist "
        "runs on TensorFlow. Start a new session and import landscape_dist before Keras (or set "
        "KERAS_BACKEND=tensorflow).")
    monkeypatch.undo()
    check_keras_backend()  # this session's own Keras is on TensorFlow
