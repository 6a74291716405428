"""A terminal a user can read: no Keras or TensorFlow warning on the tool's own path, the
vectorisation fallback's reason in words, numbers printed at the precision they mean."""

import logging
import warnings

import numpy as np
import pytest
import yaml

from landscape_dist.cli import main
from landscape_dist.cli.lines import (duration, duration_span, estimate_lines, info_lines, rate,
                                      sweep_lines)
from landscape_dist.model.strategy import unavailable_reason

SETTINGS = {"model": {"source": "parabola"}, "data": {"source": "parabola"},
            "train": {"epochs": 2, "batch_size": 64, "record_every": 1},
            "grid": {"x": {"min": -1.0, "max": 1.0, "points": 4},
                     "y": {"min": -1.0, "max": 1.0, "points": 3}},
            "slices": [{"name": "random", "directions": {"seed": 1}},
                       {"name": "pca", "directions": {"kind": "pca"}}],
            "plot": {"formats": ["png"]}}


class _AsAUserSeesThem(warnings.catch_warnings):
    """Warnings recorded under Python's own default filters (what a user's terminal shows),
    whatever filters pytest has set."""

    def __init__(self):
        super().__init__(record=True)

    def __enter__(self):
        caught = super().__enter__()
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                         ResourceWarning):
            warnings.simplefilter("ignore", category)
        return caught


def _stray(caught, err: str) -> list[str]:
    """What came out besides the tool's own lines: Python warnings, and lines on stderr that do
    not start with the tool's words (a summary line, or 'landscape-dist: ...')."""
    ours = ("landscape-dist: ", "trained: ", "swept ", "  slice '", "curvature: ")
    lines = [line for line in err.splitlines()
             if line and not line.startswith(ours) and " images and files in " not in line]
    return [f"{w.category.__name__}: {w.message}" for w in caught] + lines


@pytest.mark.slow
def test_train_and_run_say_only_their_own_lines(tmp_path, capfd):
    import keras

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(SETTINGS))
    capfd.readouterr()
    with _AsAUserSeesThem() as caught:
        assert main(["train", str(cfg), "--out", str(tmp_path / "t")]) == 0
    err = capfd.readouterr().err
    assert _stray(caught, err) == [] and err.startswith("trained: 3 checkpoints recorded")
    with _AsAUserSeesThem() as caught:
        assert main(["run", str(cfg), "--out", str(tmp_path / "r"), "--in-process",
                     "--no-progress"]) == 0
    err = capfd.readouterr().err
    assert _stray(caught, err) == [] and "shuffle" not in err
    with _AsAUserSeesThem() as caught:  # its own model file loads as saved (optimizer and all)
        keras.models.load_model(tmp_path / "r" / "model.keras")
    assert _stray(caught, capfd.readouterr().err) == []


def test_the_vectorisation_fallback_says_why_in_words(caplog):
    from landscape_dist.core.directions import random_directions
    from landscape_dist.model.evaluator import LandscapeEvaluator
    from landscape_dist.model.sources import DataSpec, ModelSpec

    model = ModelSpec.from_source("digits").build()
    x, y = DataSpec("digits").load()
    evaluator = LandscapeEvaluator(model, x[:40], y[:40])
    centre = evaluator.layout.flatten([v.numpy() for v in model.trainable_variables])
    evaluator.set_plane(centre, random_directions(centre, evaluator.layout, 2,
                                                  np.random.default_rng(0)))
    with caplog.at_level(logging.INFO, logger="landscape_dist"):
        evaluator.evaluate(np.zeros((2, 2), np.float32))
    assert [r.getMessage() for r in caplog.records if "vectorised" in r.getMessage()] == [
        "vectorised evaluation unavailable (TensorFlow cannot vectorise the model's Conv2D op "
        "when its filter differs per point); using a compiled loop"]
    assert evaluator.method == "loop"


def test_unavailable_reasons_from_tensorflows_own_errors():
    import tensorflow as tf

    def failure(function):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                tf.function(lambda b: tf.vectorized_map(function, b, fallback_to_while_loop=False))(
                    tf.ones((3, 4)))
            except ValueError as err:
                return err
        raise AssertionError("vectorised where it was expected not to be")

    unique = failure(lambda v: tf.cast(tf.size(tf.unique(v)[0]), tf.float32))
    assert str(unique).startswith("in user code:")  # what used to be printed
    assert unavailable_reason(unique) == (
        "TensorFlow has no vectorised form of the model's Unique op")
    traceback = 'in user code:\n\n  File "m.py", line 3  *\n    f(x)\n\n    TypeError: no rule\n'
    assert unavailable_reason(ValueError(traceback)) == "no rule"
    assert unavailable_reason(NotImplementedError()) == "NotImplementedError"


def test_rates_durations_and_stored_numbers_at_the_precision_they_mean():
    assert [rate(v) for v in (None, 0.0, 0.4123, 57.88, 99.4, 3704.25)] == [
        "-", "0", "0.412", "57.9", "99.4", "3,704"]
    assert [duration(s) for s in (0.0, 0.4, 1.2, 40.4, 725.0, 9000.0)] == [
        "under 1 s", "under 1 s", "about 1 s", "about 40 s", "about 12 min", "about 2.5 h"]
    assert [duration_span(*b) for b in ((0.1, 0.6), (0.2, 40.0), (12.0, 40.0), (40.2, 39.8))] == [
        "under 1 s", "up to about 40 s", "about 12 s to 40 s", "about 40 s"]
    slow = {"surface": "o/surface.h5", "slices": {"r": {"points": 9, "seconds": 21.9,
                                                        "points_per_s": 0.4111}}}
    assert sweep_lines(slow)[1] == "  slice 'r': 9 points, 0.411 points/s"
    info = {"file": "s.h5", "complete": True, "versions": {}, "config": {
        "evaluation": {"memory_budget_mb": 256.0, "lanczos_tol": 1e-05, "mode": "auto"}},
        "slices": {"p": {"grid": {"x": [-1.0, 1.0, 5]}, "points": 5, "done": 5,
                         "quantities": ["loss"], "path": False,
                         "directions": {"kind": "pca", "seed": 0, "cosine": -0.00919801893758452,
                                        "explained_variance_ratio": [0.9871234, 2.5559939e-30]}}}}
    lines = info_lines(info)
    assert lines[3] == ("    directions: kind pca, seed 0, cosine -0.0092, "
                        "explained_variance_ratio [0.987, 2.56e-30]")
    assert lines[4] == "  evaluation: memory_budget_mb 256, lanczos_tol 1e-05, mode auto"


def _slice(refined: bool, seconds: float, bounds) -> dict:
    return {"points": 42, "tiles": 2, "gflop_per_point": 0.00426, "probe_points_per_s": 0.41,
            "probe_points": 8, "estimated_s": seconds, "refined": refined,
            "refined_points_at_least": 12, "refined_estimated_s": list(bounds)}


def test_the_dry_run_says_under_a_second_and_bounds_only_for_refined_slices():
    result = {"workers": 1, "workers_from": "in this process",
              "slices": {"plain": _slice(False, 0.3, (0.1, 0.3)),
                         "fine": _slice(True, 40.4, (0.2, 40.4))},
              "estimated_s": 40.7, "as_configured_s": [0.5, 40.7]}
    assert estimate_lines(result)[1:] == [
        "  slice 'plain': 42 points in 2 tiles, 0.00426 GFLOP per point (forward), 0.41 points/s "
        "on one worker (probe of 8 points), under 1 s for every point",
        "  slice 'fine': 42 points in 2 tiles, 0.00426 GFLOP per point (forward), 0.41 points/s "
        "on one worker (probe of 8 points), about 40 s for every point; refined (grid.refine): "
        "up to about 40 s (at least 12 points)",
        "estimated sweep as configured: up to about 41 s (refined slices), plus the pool's "
        "start-up"]
    result.update(slices={"plain": _slice(False, 0.3, (0.1, 0.3))}, as_configured_s=[0.3, 0.3])
    assert estimate_lines(result)[-1] == (
        "estimated sweep as configured: under 1 s, plus the pool's start-up")
