"""The strategy tuner: vectorised evaluation with fallback loops offered where strict vectorisation
fails, tuning bounded by what the sweep stands to gain, one measurement for identical workers,
and choices kept on disk per model and machine."""

import json
import logging

import numpy as np
import pytest

from landscape_dist.config import config_from_dict
from landscape_dist.config.schema import ClusterConfig
from landscape_dist.core.layout import WeightLayout
from landscape_dist.core.quantities import POINTS
from landscape_dist.execution import Job, make_pool
from landscape_dist.model.evaluator import LandscapeEvaluator
from landscape_dist.model.sizing import live_activations_per_example
from landscape_dist.model.checks import activations_per_example
from landscape_dist.model.reference import evaluate_per_point, points_to_weights
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.model.strategy import Strategy
from landscape_dist.model import tuning
from landscape_dist.model.tuning import StrategyTuner, first_round
from landscape_dist.registry import BACKENDS


def _attention_model():
    """Embedding, MultiHeadAttention, LayerNormalization, Dense: a small text classifier."""
    import keras

    keras.utils.set_random_seed(3)
    tokens = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 8)(tokens)
    h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(2, 4)(h, h))
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model(tokens, out)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    rng = np.random.default_rng(4)
    x = rng.integers(0, 20, size=(24, 6)).astype(np.int32)
    y = rng.integers(0, 3, size=24).astype(np.int32)
    return model, x, y


def _plane(model, seed=0, scale=0.05):
    layout = WeightLayout.from_variables(model.trainable_variables)
    centre = layout.flatten([v.numpy() for v in model.trainable_variables])
    directions = scale * np.random.default_rng(seed).standard_normal((2, layout.size))
    return layout, centre, directions.astype(np.float32)


@pytest.mark.slow
def test_the_tuner_offers_vectorised_evaluation_with_fallback_loops_for_attention(monkeypatch,
                                                                                tmp_path):
    model, x, y = _attention_model()
    layout, centre, directions = _plane(model)

    def evaluator():
        return LandscapeEvaluator(model, x, y, tune=True, tune_after=1,
                                  tuning_cache=tmp_path).set_plane(centre, directions)

    ev = evaluator()
    grid = np.random.default_rng(1).uniform(-1, 1, (64, 2)).astype(np.float32)
    ev.evaluate(grid[:4])  # the first job: strict vectorisation fails, a compiled loop runs
    assert ev.vectorize_failure is not None and ev.method == "loop"
    [stored] = tmp_path.glob("*.json")  # kept: the next run does not try it again
    assert json.loads(stored.read_text())["strategy"] is None
    again = evaluator()
    again.evaluate(grid[:4])
    assert again.vectorize_failure == ev.vectorize_failure and again.method == "loop"
    monkeypatch.setattr(tuning, "second_round", lambda *args: [])  # the first round is enough here
    ev.evaluate(grid)
    timed = set(ev.choice["us_per_point"])
    assert timed == {"loop", "vectorized + fallback"}
    ev.force_strategy(Strategy("vectorized", fallback=True))
    got = ev.evaluate(grid[:3])
    ref = evaluate_per_point(model, x, y, layout, points_to_weights(centre, directions, grid[:3]))
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(got[name], ref[name], rtol=2e-6, err_msg=name)


class _FakeEvaluator:
    """What the tuner asks of an evaluator, on a clock that advances by what a call would cost:
    ``per_point`` s a point, ``compile_s`` on a strategy's first call (twice for XLA)."""

    def __init__(self, clock, per_point=1e-3, compile_s=2.0):
        import keras

        self.model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
        self.clock, self.per_point, self.compile_s = clock, per_point, compile_s
        self.points_per_call, self.mode = 64, "auto"
        self.shortcut, self.folding, self.vectorize_failure = object(), object(), None
        self.strategy = Strategy("vectorized", shortcut=True)
        self.compiled = {self.strategy}
        self.timed: list[str] = []

    @property
    def effective_strategy(self):
        return self.strategy

    def force_strategy(self, strategy):
        self.strategy = strategy

    def known_vectorize_failure(self):
        return None

    def compiled_call(self, points):
        if self.strategy not in self.compiled:
            self.compiled.add(self.strategy)
            self.timed.append(self.strategy.label)
            self.clock.now += self.compile_s * (2 if self.strategy.xla else 1)
        self.clock.now += self.per_point * len(points)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("sweep_points, timed", [
    (500, None),  # 10% of 500 points holds not even three passes over the 64-point sample
    (10_000, []),  # a 1 s budget: no candidate's 2 s compilation fits
    (100_000, ["vectorized", "vectorized + fold", "loop + shortcut", "loop"]),  # 10 s: four
    (None, "all"),  # no bound: every candidate
])
def test_the_tuning_budget_caps_what_is_timed(sweep_points, timed):
    clock = _Clock()
    ev = _FakeEvaluator(clock)
    tuner = StrategyTuner(share=0.1, clock=clock)
    items = np.zeros((64, 2), np.float32)
    chosen = tuner.choose(ev, items, sweep_points, first_job=(2.0 + 64e-3, 64))
    if timed is None:
        assert chosen is None and tuner.settled_ and ev.timed == []
        return
    first = [s.label for s in first_round("auto", "vectorized", True, True)][1:]
    if timed == "all":
        assert ev.timed[:len(first)] == first and len(ev.timed) > len(first)  # the second round too
        assert tuner.skipped_ == []
        return
    assert ev.timed == timed
    assert tuner.budget_s_ == pytest.approx(0.1 * sweep_points * 1e-3)
    assert tuner.spent_s_ <= tuner.budget_s_
    assert chosen == Strategy("vectorized", shortcut=True)  # every candidate ties: the first stays
    assert {s.label for s in tuner.skipped_} >= set(first) - set(timed)


def test_a_stored_choice_is_used_at_once_and_its_skipped_candidates_timed_later(tmp_path):
    from landscape_dist.model.choosing import StrategyChooser
    from landscape_dist.model.tuning_cache import TuningCache

    class Evaluator(_FakeEvaluator):
        choice = {}

        def tuning_key(self):
            return {"model": "fake"}

    items = np.zeros((64, 2), np.float32)
    runs = []
    for _ in range(2):
        clock = _Clock()
        ev = Evaluator(clock)
        chooser = StrategyChooser(StrategyTuner(share=0.1, clock=clock), TuningCache(tmp_path))
        chooser.jobs_left, chooser.first_job = 100_000 // 64, (2.0 + 64e-3, 64)
        chooser.before_job(ev, items)  # the first run times; the second reads, then times
        runs.append((list(ev.timed), chooser.source, ev.strategy))
        chooser.before_job(ev, items)
        runs[-1] += (list(ev.timed), chooser.source, chooser.settled)
    first_timed, source, strategy, _, _, settled = runs[0]
    assert first_timed == ["vectorized", "vectorized + fold", "loop + shortcut", "loop"]
    assert source == "timed" and settled
    read_timed, read_source, read_strategy, resumed, _, settled = runs[1]
    assert read_timed == [] and read_source == "cache" and read_strategy == strategy
    # the second run times what the first skipped: the rest of the first round, then the second
    assert resumed[0] == "loop + fold" and not set(resumed) & set(first_timed) and settled
    assert len(json.loads(next(tmp_path.glob("*.json")).read_text())["report"]["us_per_point"]) \
        == 1 + len(first_timed) + len(resumed)


def _fake_choose(calls):
    """A tuner's ``choose`` that times nothing: it counts its calls and picks a loop."""
    def choose(self, evaluator, items, sweep_points=None, first_job=None, only=None):
        calls.append(len(items))
        self.strategy_, self.points_per_call_ = Strategy("loop"), 32
        self.timings_, self.calls_ = {Strategy("loop"): 1e-5}, {32: 1e-5}
        return self.strategy_
    return choose


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "threads"])
def test_identical_workers_tune_once(backend, monkeypatch):
    from thread_backend import ThreadPool

    calls = []
    monkeypatch.setattr(StrategyTuner, "choose", _fake_choose(calls))
    if backend == "threads":
        BACKENDS.register("threads")(ThreadPool)
    evaluation = config_from_dict({"evaluation": {"tuning_cache": "none"}}).evaluation
    shards = 2 if backend == "local" else 1  # in process: one worker per shard
    try:
        pool = make_pool(ClusterConfig(backend=backend, num_workers=2), ModelSpec.from_source("parabola"),
                         DataSpec("parabola", num_shards=shards), evaluation, ("loss",))
        try:
            model = ModelSpec.from_source("parabola").build()
            _, centre, directions = _plane(model)
            pool.set_plane(centre, directions, [])
            grid = np.random.default_rng(2).uniform(-1, 1, (6 * 64, 2)).astype(np.float32)
            pool.run([Job(i, POINTS, grid[i * 64:(i + 1) * 64]) for i in range(6)],
                     lambda key, result: None)
            choices = [c[""] for c in pool.choices()]
        finally:
            pool.close()
    finally:
        if backend == "threads":
            BACKENDS.remove("threads")
    assert calls == [64]  # one worker timed, once
    assert sorted(c["chosen_by"] for c in choices) == ["shared", "timed"]
    assert all(c["method"] == "loop" and c["points_per_call"] == 32 for c in choices)


@pytest.mark.slow
def test_choices_are_kept_on_disk_keyed_and_a_damaged_file_is_ignored(tmp_path, monkeypatch,
                                                                       caplog):
    from landscape_dist.model.examples import parabola_data, parabola_model

    calls = []
    monkeypatch.setattr(StrategyTuner, "choose", _fake_choose(calls))
    x, y = parabola_data(64)
    grid = np.random.default_rng(3).uniform(-1, 1, (64, 2)).astype(np.float32)

    def evaluator(model, data=(x, y)):
        _, centre, directions = _plane(model)
        return LandscapeEvaluator(model, *data, tune=True, tune_after=1,
                                  tuning_cache=tmp_path).set_plane(centre, directions)

    first = evaluator(parabola_model())
    first.evaluate(grid)  # evaluated as it comes
    first.evaluate(grid)  # timed, stored
    files = list(tmp_path.glob("*.json"))
    assert calls == [64] and len(files) == 1 and first.choice["chosen_by"] == "timed"
    entry = json.loads(files[0].read_text())
    assert entry["strategy"]["method"] == "loop" and entry["points_per_call"] == 32
    second = evaluator(parabola_model())  # the same model again: its first job reads the choice
    second.evaluate(grid)
    assert calls == [64] and second.choice["chosen_by"] == "cache"
    assert second.method == "loop" and second.points_per_call == 32
    fewer = evaluator(parabola_model(), parabola_data(32))  # other data shapes: a new key
    fewer.evaluate(grid)
    fewer.evaluate(grid)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.json"))) == 2
    other = LandscapeEvaluator(_wider_parabola(), x, y, tune=True, tuning_cache=tmp_path)
    other.set_plane(*_plane(other.model)[1:]).evaluate(grid)  # another architecture: timed anew
    assert len(calls) == 3 and other.choice["chosen_by"] == "timed"
    files[0].write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="landscape_dist.model.tuning_cache"):
        third = evaluator(parabola_model())
        third.evaluate(grid)
        third.evaluate(grid)
    assert len(calls) == 4 and third.choice["chosen_by"] == "timed"
    damaged = [r for r in caplog.records if "damaged" in r.getMessage()]
    assert len(damaged) == 1 and "ignored" in damaged[0].getMessage()
    assert json.loads(files[0].read_text())["points_per_call"] == 32  # written again


def _wider_parabola():
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(loss="mse")
    return model


def test_a_deep_nets_batches_are_sized_by_the_activations_alive_at_once():
    import keras

    model = keras.Sequential([keras.Input((64,))] + [keras.layers.Dense(64) for _ in range(12)]
                             + [keras.layers.Dense(1)])
    model.compile(loss="mse")
    assert activations_per_example(model) == 12 * 64 + 1
    assert live_activations_per_example(model) == 64 + 64 + 64  # a layer's input and output, one held
    x = np.zeros((32, 64), np.float32)
    # 0.25 MiB: the sum of every layer's output, 2 * 12 * 769 bytes per example, gave 14
    ev = LandscapeEvaluator(model, x, np.zeros((32, 1), np.float32), memory_budget_mb=0.25)
    assert ev.batch_size == 32


@pytest.mark.slow
def test_identical_ray_workers_share_one_measurement(ray_cluster):
    evaluation = config_from_dict({"evaluation": {"tune_share": None,
                                                  "tuning_cache": "none"}}).evaluation
    pool = make_pool(ClusterConfig(backend="ray", num_workers=2), ModelSpec.from_source("parabola"),
                     DataSpec("parabola"), evaluation, ("loss",))
    try:
        _, centre, directions = _plane(ModelSpec.from_source("parabola").build())
        pool.set_plane(centre, directions, [])
        grid = np.random.default_rng(4).uniform(-1, 1, (4 * 64, 2)).astype(np.float32)
        for _ in range(2):  # the choice may come after the first run's last job
            pool.run([Job(i, POINTS, grid[i * 64:(i + 1) * 64]) for i in range(4)],
                     lambda key, result: None)
        choices = [c[""] for c in pool.choices()]
    finally:
        pool.close()
    assert sorted(c["chosen_by"] for c in choices) == ["shared", "timed"]
    assert choices[0]["us_per_point"] == choices[1]["us_per_point"]  # one set of timings
    assert len({(c["method"], c["xla"], c["parallel"], c["points_per_call"]) for c in choices}) == 1


def test_the_cache_place_and_its_settings(monkeypatch, tmp_path):
    from landscape_dist.config import ConfigError
    from landscape_dist.model.tuning_cache import ENV, cache_dir

    monkeypatch.delenv(ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("default") == tmp_path / "landscape_dist" / "tuning"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("default") == tmp_path / "home" / ".cache" / "landscape_dist" / "tuning"
    assert cache_dir("none") is None and cache_dir(None) is None
    assert cache_dir(str(tmp_path / "here")) == tmp_path / "here"
    evaluation = config_from_dict({"evaluation": {"tuning_cache": "none", "tune_share": 0.5}})
    assert evaluation.evaluation.tuning_cache == "none"
    for bad, message in (({"tune_share": 0}, "The 'evaluation.tune_share' setting must be a "
                                             "number > 0 and <= 1 (a share of the sweep's time) "
                                             "or null (no bound). Got 0.0 instead."),
                         ({"tuning_cache": " "}, "The 'evaluation.tuning_cache' setting must be "
                                                 "'default' (the user's cache directory), a "
                                                 "directory or 'none'. Got ' ' instead.")):
        with pytest.raises(ConfigError) as err:
            config_from_dict({"evaluation": bad})
        assert str(err.value) == message


_KEY = {"model": "fake"}


def _entry(**changes):
    from landscape_dist.model.tuning_cache import FORMAT, _plain

    entry = {"format": FORMAT, "key": _plain(_KEY), "points_per_call": 32,
             "strategy": {"method": "loop", "shortcut": False, "fold": False, "xla": False,
                          "parallel": 1, "fallback": False},
             "report": {"us_per_point": {"loop": 3.0}, "skipped": ["loop + fold"]}}
    for name, value in changes.items():
        if name in entry["strategy"]:
            entry["strategy"][name] = value
        else:
            entry[name] = value
    return json.dumps(entry).encode()


@pytest.mark.parametrize("content, reason", [
    (b"\xff\xfe{}", "'utf-8' codec can't decode byte 0xff"),  # not text: was a crash
    (b"[1, 2]", "'list' object has no attribute 'get'"),
    (_entry(xla="no"), "strategy xla 'no' is not true or false"),  # would have read as true
    (_entry(points_per_call=2.5), "points per call 2.5 is not an integer >= 1"),
    (_entry(points_per_call=True), "points per call True is not an integer >= 1"),
    (_entry(strategy=[]), "the strategy is not a mapping"),  # would have read as the default
    (_entry(report={"skipped": 5}), "the report is not a mapping with a list of skipped labels"),
    (_entry(method="fast"), "The 'method' parameter must be 'vectorized' or 'loop'."),
])
def test_a_damaged_cache_entry_is_ignored_with_one_line(tmp_path, caplog, content, reason):
    from landscape_dist.model.tuning_cache import TuningCache

    cache = TuningCache(tmp_path)
    cache.path(_KEY).write_bytes(_entry())
    assert cache.read(_KEY)["strategy"] == Strategy("loop")  # the entry as written reads back
    cache.path(_KEY).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="landscape_dist.model.tuning_cache"):
        assert cache.read(_KEY) is None
    assert len(caplog.records) == 1
    assert f"is damaged ({reason}" in caplog.records[0].getMessage()


def test_a_cache_place_that_cannot_hold_entries_costs_one_line_and_no_file(tmp_path, caplog):
    from landscape_dist.model.choosing import StrategyChooser
    from landscape_dist.model.tuning_cache import TuningCache

    class Evaluator(_FakeEvaluator):
        choice = {}

        def tuning_key(self):
            return _KEY

    user_file = tmp_path / "notes.txt"
    user_file.write_text("mine\n")
    for place in (user_file, "/proc/landscape_dist_cache"):  # a file; a place nobody may write
        caplog.clear()
        clock = _Clock()
        ev = Evaluator(clock)
        chooser = StrategyChooser(StrategyTuner(share=0.1, clock=clock), TuningCache(place))
        chooser.jobs_left, chooser.first_job = 100_000 // 64, (2.0 + 64e-3, 64)
        with caplog.at_level(logging.WARNING, logger="landscape_dist.model.tuning_cache"):
            chooser.before_job(ev, np.zeros((64, 2), np.float32))  # reads, times, writes
        assert chooser.source == "timed" and chooser.settled  # the sweep goes on
        assert len(caplog.records) == 1  # the file: read and write fail, said once
        assert all("tuning cache" in r.getMessage() for r in caplog.records)
    assert user_file.read_text() == "mine\n" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_writers_of_one_entry_at_once_leave_a_whole_entry(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from landscape_dist.model.tuning_cache import TuningCache

    def write(i):  # as two workers (or two sweeps) storing the same key's choice
        TuningCache(tmp_path).write(_KEY, Strategy("loop", parallel=1 + i % 2), 32, {"run": i})
        return TuningCache(tmp_path).read(_KEY)

    with ThreadPoolExecutor(4) as workers:
        seen = list(workers.map(write, range(40)))
    assert all(entry is not None and entry["points_per_call"] == 32 for entry in seen)
    assert [p.name for p in tmp_path.iterdir()] == [TuningCache(tmp_path).path(_KEY).name]


def _small_model(body, metrics=(), loss="mse", shape=(6, 6, 2), outputs=1, labels=None):
    """A compiled functional model ``Input(shape) -> body -> Flatten -> Dense(outputs)`` and 8
    seeded examples (labels: ``labels`` or zeros of the output's shape)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    model = keras.Model(inputs, keras.layers.Dense(outputs)(keras.layers.Flatten()(body(inputs))))
    model.compile(loss=loss, metrics=list(metrics))
    x = np.random.default_rng(0).standard_normal((8,) + shape).astype(np.float32)
    y = np.zeros((8, outputs), np.float32) if labels is None else labels
    model.evaluate(x[:2], y[:2], verbose=0)  # builds the compiled metrics
    return model, x, y


def _known(model, skip=()):
    from landscape_dist.model.checks import compile_metrics
    from landscape_dist.model.strategy import known_vectorization_failure

    metrics = compile_metrics(model)
    return known_vectorization_failure(model, metrics.metrics if metrics else (), skip)


def test_strict_vectorisation_is_known_to_fail_from_layer_and_metric_types():
    import keras
    from keras import layers

    conv = _small_model(lambda t: layers.Conv2D(2, 3)(t))[0]
    assert _known(conv) == ("TensorFlow cannot vectorise the model's Conv2D layers (known; "
                            "not tried)")
    inner = keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2DTranspose(2, 3)])
    assert "Conv2DTranspose layers" in _known(_small_model(inner)[0])  # nested models too
    # the first-layer shortcut does the first convolution's per-point work
    first = [layer for layer in conv.layers if isinstance(layer, layers.Conv2D)]
    assert _known(conv, skip=first) is None
    assert _known(_small_model(lambda t: layers.DepthwiseConv2D(3)(t))[0]) is None
    assert _known(_small_model(lambda t: layers.LayerNormalization()(t))[0]) is None
    labels = np.zeros(8, np.int32)
    accuracy = _small_model(lambda t: t, ["accuracy"], "sparse_categorical_crossentropy",
                            outputs=3, labels=labels)[0]
    assert _known(accuracy) == ("TensorFlow cannot vectorise the SparseCategoricalAccuracy "
                                "metric (known; not tried)")
    assert _known(_small_model(lambda t: t, ["mae"])[0]) is None


def test_the_first_tuned_job_does_not_try_a_strict_vectorisation_known_to_fail():
    from keras import layers

    model, x, y = _small_model(lambda t: layers.Conv2D(2, 3, activation="relu")(t), ["mae"])
    layout, centre, directions = _plane(model)
    grid = np.random.default_rng(1).uniform(-1, 1, (4, 2)).astype(np.float32)
    # what the rule foresees is what happens when it is tried
    tried = LandscapeEvaluator(model, x, y).set_plane(centre, directions)
    tried.evaluate(grid[:1])
    assert tried.method == "loop"
    assert tried.vectorize_failure == ("TensorFlow cannot vectorise the model's Conv2D op when "
                                       "its filter differs per point")
    ev = LandscapeEvaluator(model, x, y, tune=True, tune_after=1).set_plane(centre, directions)
    got = ev.evaluate(grid)
    # the loop from the start: a failed attempt would have recorded TensorFlow's own reason
    assert ev.method == "loop" and ev.vectorize_failure == _known(model)
    ref = evaluate_per_point(model, x, y, layout, points_to_weights(centre, directions, grid))
    for name in ("loss", "mae"):
        np.testing.assert_allclose(got[name], ref[name], rtol=2e-5, atol=1e-6)
