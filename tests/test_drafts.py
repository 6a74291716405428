"""Drafts on a fixed random subset of the examples: the subset, the standard error stored beside
the loss, and the final sweep on every example after a draft."""

import keras
import numpy as np
import pytest

from landscape_dist.callbacks import SweepCallback
from landscape_dist.config import config_from_dict
from landscape_dist.config.schema import SettingError
from landscape_dist.core.layout import WeightLayout
from landscape_dist.errors import SourceError
from landscape_dist.execution import InProcessPool
from landscape_dist.figures.static import caption_text
from landscape_dist.model.evaluator import LandscapeEvaluator
from landscape_dist.model.sources import DataSpec, ModelSpec
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface


def test_subset_is_seeded_sorted_and_split_exactly_by_shards():
    spec = DataSpec("digits", examples=300, examples_seed=7)
    chosen = spec.chosen(1797)
    assert len(chosen) == 300 and np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(chosen, DataSpec("digits", examples=300, examples_seed=7).chosen(1797))
    assert not np.array_equal(chosen, DataSpec("digits", examples=300, examples_seed=8).chosen(1797))
    x_all, _ = DataSpec("digits").load()
    x, y, total = spec.load(with_total=True)
    assert total == 1797
    np.testing.assert_array_equal(x, x_all[chosen])
    sharded = DataSpec("digits", num_shards=3, examples=300, examples_seed=7)
    parts = [sharded.load(s)[0] for s in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), x)  # the shards hold the subset once
    with pytest.raises(SourceError) as err:
        DataSpec("parabola", examples=300).load()
    assert str(err.value) == ("The 'evaluation.examples' setting is 300, more than the 256 examples "
                              "of 'parabola'. Use at most 256, or null for all of them.")


def _evaluator(source, n, seed=0):
    model = ModelSpec.from_source(source).build()
    x, y, total = DataSpec(source, examples=n, examples_seed=seed).load(with_total=True)
    ev = LandscapeEvaluator(model, x, y, population=(n, total))
    layout = WeightLayout.from_variables(model.trainable_variables)
    centre = layout.flatten([v.numpy() for v in model.trainable_variables])
    ev.set_plane(centre, np.zeros((2, centre.size), np.float32))
    return model, x, y, total, ev


@pytest.mark.parametrize("source,n", [("parabola", 100), ("digits", 250)])
def test_standard_error_equals_the_per_example_losses_spread(source, n):
    model, x, y, total, ev = _evaluator(source, n)
    got = ev.evaluate(np.zeros((1, 2), np.float32))
    pred = model.predict(x, verbose=0)
    if source == "parabola":
        each = ((pred - y) ** 2).mean(axis=1)
    else:
        each = keras.losses.sparse_categorical_crossentropy(y, pred, from_logits=True).numpy()
    expected = each.std(ddof=1) / np.sqrt(n) * np.sqrt((total - n) / (total - 1))
    np.testing.assert_allclose(got["loss"], each.mean(), rtol=1e-5)
    np.testing.assert_allclose(got["loss_stderr"], expected, rtol=1e-4)


def test_every_example_has_no_standard_error():
    *_, ev = _evaluator("parabola", 256)
    np.testing.assert_allclose(ev.evaluate(np.zeros((1, 2), np.float32))["loss_stderr"], 0.0, atol=1e-7)


SETTINGS = {"model": {"source": "digits"}, "data": {"source": "digits"},
            "grid": {"x": {"min": -1.0, "max": 1.0, "points": 9},
                     "y": {"min": -1.0, "max": 1.0, "points": 9}, "tile": [3, 9]},
            "slices": [{"name": "random", "directions": {"seed": 2}}],
            "evaluation": {"examples": 300, "examples_seed": 1}}


def _pool(config, shards=1):
    return InProcessPool(ModelSpec.from_source("digits"),
                         DataSpec("digits", num_shards=shards, examples=config.evaluation.examples,
                                  examples_seed=config.evaluation.examples_seed),
                         config.evaluation)


class _Stop(SweepCallback):
    def on_tile_end(self, name, tile, result):
        raise KeyboardInterrupt


@pytest.mark.slow
def test_draft_then_final_in_the_same_directory(tmp_path):
    config = config_from_dict(SETTINGS)
    summary = sweep(config, tmp_path, pool=_pool(config), progress=False)
    assert summary["slices"]["random"]["subset"] == {"loss_stderr": {"examples": 300, "of": 1797}}
    draft = read_surface(tmp_path / "surface.h5")["random"]
    assert "draft: 300 of 1,797 examples" in caption_text(draft)
    sharded = config_from_dict({**SETTINGS, "data": {"source": "digits", "shards": 2}})
    sweep(sharded, tmp_path / "sharded", pool=_pool(sharded, 2), progress=False)
    two = read_surface(tmp_path / "sharded" / "surface.h5")["random"]
    for name in ("loss", "accuracy", "loss_stderr"):
        np.testing.assert_allclose(two.values[name], draft.values[name], rtol=1e-5)

    final_config = config_from_dict({**SETTINGS, "evaluation": {}})
    with pytest.raises(KeyboardInterrupt):  # the final sweep stopped after one tile...
        sweep(config, tmp_path, pool=_pool(final_config), progress=False, callbacks=[_Stop()],
              final=True)
    assert (tmp_path / "surface_draft.h5").is_file()
    summary = sweep(config, tmp_path, pool=_pool(final_config), progress=False, final=True)
    info = summary["slices"]["random"]
    assert info["tiles_resumed"] == 1 and "subset" not in info  # ...resumes as the final one
    final = read_surface(tmp_path / "surface.h5")["random"]
    kept = read_surface(tmp_path / "surface_draft.h5")["random"]
    np.testing.assert_array_equal(kept.values["loss"], draft.values["loss"])
    assert "loss_stderr" not in final.values and "draft" not in caption_text(final)
    z = np.abs(final.values["loss"] - draft.values["loss"]) / draft.values["loss_stderr"]
    assert np.mean(z <= 3) >= 0.99


def test_draft_journal_is_set_aside_not_resumed_into_the_final_sweep(tmp_path):
    config = config_from_dict(SETTINGS)
    with pytest.raises(KeyboardInterrupt):
        sweep(config, tmp_path, pool=_pool(config), progress=False, callbacks=[_Stop()])
    with pytest.raises(ValueError, match=r"evaluation.examples: 300 -> None"):
        sweep(config_from_dict({**SETTINGS, "evaluation": {}}), tmp_path, pool=_pool(config),
              progress=False)  # without --final the draft journal is refused, not mixed in
    final_config = config_from_dict({**SETTINGS, "evaluation": {}})
    summary = sweep(config, tmp_path, pool=_pool(final_config), progress=False, final=True)
    assert summary["slices"]["random"]["tiles_resumed"] == 0
    assert (tmp_path / "surface_draft.h5.journal").is_file()


def test_examples_setting_is_checked():
    with pytest.raises(SettingError) as err:
        config_from_dict({**SETTINGS, "evaluation": {"examples": 1}})
    assert str(err.value) == ("The 'evaluation.examples' setting must be an integer >= 2 (a subset "
                              "for drafts) or null (every example). Got 1 instead.")
