"""The notebook API: ``ld.landscape(model, (x, y), ...)`` on a live compiled model equals the
command line's sweep on the same inputs, on Ray and in process; its keywords reach every YAML
setting and are refused as the YAML is, named by the keyword."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import numpy as np
import pytest

import landscape_dist as ld
from landscape_dist.commands.landscape import configure
from landscape_dist.config.schema import Config

GRID = {"x": {"points": 5}, "y": {"points": 4}}


def _trained(epochs: int = 3):
    import keras

    from landscape_dist.model.examples import parabola_data, parabola_model

    keras.utils.set_random_seed(0)
    x, y = parabola_data(64)
    model = parabola_model()
    recorder = ld.PathRecorder(every=1)
    model.fit(x, y, epochs=epochs, batch_size=32, callbacks=[recorder], verbose=0, shuffle=False)
    return model, x, y, recorder


def test_import_stays_light():
    code = ("import sys, landscape_dist as ld; ld.landscape; ld.Landscape; "
            "print('tensorflow' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def _leaves(cls, prefix=""):
    """(dotted name, field type, default) of every setting of a settings dataclass."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = [t for t in typing.get_args(hints[f.name]) or (hints[f.name],)
                 if dataclasses.is_dataclass(t)]
        if inner and f.name not in ("directions",):
            yield from _leaves(inner[0], f"{prefix}{f.name}.")
        else:
            default = (f.default if f.default is not dataclasses.MISSING
                       else f.default_factory() if f.default_factory is not dataclasses.MISSING
                       else None)
            yield f"{prefix}{f.name}", default


def _other(value):
    """A value other than the default that most settings of its type accept."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.5
    return value


def _get(plain: dict, dotted: str):
    for part in dotted.split("."):
        plain = plain[int(part)] if isinstance(plain, list) else plain[part]
    return plain


def _nested(dotted: str, value) -> dict:
    head, _, rest = dotted.partition(".")
    return {head: _nested(rest, value) if rest else value}


def test_every_yaml_setting_is_a_keyword():
    """Walk the schema: every setting of every section (each plane kind's directions too) goes
    through the keywords and lands in the built Config."""
    from landscape_dist.config.sections import CurvatureConfig
    from landscape_dist.registry import PLANE_KINDS

    reached = []
    for section in dataclasses.fields(Config):
        if section.name == "slices":
            continue
        hint = typing.get_type_hints(Config)[section.name]  # an optional section: its class
        cls = CurvatureConfig if section.name == "curvature" else next(
            (t for t in typing.get_args(hint) if dataclasses.is_dataclass(t)), hint)
        for dotted, default in _leaves(cls):
            for value in (_other(default), default):
                keyword = dict([_nested(dotted, value).popitem()])
                try:
                    built = configure(**{section.name: keyword}).to_dict()
                except ValueError:
                    continue
                assert _get(built[section.name], dotted) == (list(value) if isinstance(value, tuple) else value)
                reached.append(f"{section.name}.{dotted}")
                break
            else:
                pytest.fail(f"{section.name}.{dotted} is not reachable as a keyword")
    from landscape_dist.config.schema import AxisConfig
    for axis in ("x", "y"):
        for dotted, default in _leaves(AxisConfig):
            value = _other(default) if dotted != "spacing" else "cubic"
            built = configure(grid={axis: {dotted: value}}).to_dict()
            assert built["slices"][0]["grid"][axis][dotted] == value
            reached.append(f"grid.{axis}.{dotted}")
    for key, value in (("tile", [2, 3]), ("order", "rows"), ("refine", {"tol": 0.02})):
        built = configure(grid={key: value}).to_dict()
        got = built["slices"][0]["grid"][key]
        assert got == value or got["tol"] == 0.02
        reached.append(f"grid.{key}")
    for kind in PLANE_KINDS.names():
        for dotted, default in _leaves(PLANE_KINDS[kind].config):
            for value in (_other(default), default):
                try:
                    built = configure(slices=[{"name": "s", "directions": {"kind": kind, dotted: value}}],
                                      grid={"y": None} if kind == "interpolate" else None).to_dict()
                except ValueError:
                    continue
                assert built["slices"][0]["directions"][dotted] == (list(value) if isinstance(value, tuple) else value)
                reached.append(f"slices.{kind}.{dotted}")
                break
    assert len(reached) > 60
    assert configure(quantities=["loss", "hessian_max"]).slices[0].quantities == ("loss", "hessian_max")


@pytest.mark.parametrize("keywords, message", [
    ({"grid": {"x": {"points": 1}}},
     "The 'grid' keyword's 'x.points' setting must be an integer >= 2. Got 1 instead."),
    ({"workers": 0},
     "The 'workers' keyword must be an integer >= 1 or null (automatic). Got 0 instead."),
    ({"grid": {"x": {"pionts": 3}}},
     "Unknown setting 'x.pionts' in the 'grid' keyword. Did you mean 'points'?"),
    ({"slices": ["random", "pcaa"]},
     "The 'slices' keyword's 'directions.kind' setting of item 1 must be one of ('random', "
     "'pca', 'interpolate', 'models', 'file', 'hessian', 'curve'). Got 'pcaa' instead."),
    ({"directions": {"seed": -1}},
     "The 'directions' keyword's 'seed' setting must be an integer >= 0. Got -1 instead. Give a "
     "seed of 0 or more."),
    ({"evaluation": {"batch_size": 0}},
     "The 'evaluation' keyword's 'batch_size' setting must be an integer >= 1 or null (whole "
     "dataset). Got 0 instead."),
])
def test_bad_keywords_are_refused_in_one_line_named_by_the_keyword(keywords, message, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError) as err:
        ld.landscape("parabola", "parabola", out=out, **keywords)
    assert str(err.value) == message
    assert not out.exists()


def test_unknown_keyword_and_choices_that_cannot_meet(tmp_path):
    with pytest.raises(TypeError) as err:
        ld.landscape("parabola", "parabola", gird={})
    assert str(err.value) == "landscape() got an unexpected keyword argument 'gird'. Did you mean 'grid'?"
    with pytest.raises(ValueError) as err:
        ld.landscape("parabola", "parabola", workers=2, in_process=True)
    assert str(err.value) == ("The 'workers' keyword asks for 2 Ray workers, and 'in_process' for "
                              "none. Give one of them.")
    with pytest.raises(ValueError) as err:
        ld.landscape("parabola", "parabola", formats=["png"])
    assert str(err.value).startswith("The 'formats' keyword writes ['png'] files into 'out'")


def test_in_process_equals_the_command_lines_sweep_and_leaves_nothing(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    model, x, y, recorder = _trained()
    result = ld.landscape(model, (x, y), path=recorder, slices=["random", "pca"], grid=GRID,
                          progress=False)
    # the sweep's directory is gone (TensorFlow's autograph leaves files of its own there)
    assert [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith("landscape-")] == []
    assert result.config.cluster.backend == "local"  # the default without workers
    # the command line on the same inputs: the model saved, the data as .npz, the path file
    cli = tmp_path / "cli"
    cli.mkdir()
    model.save(cli / "source.keras")
    np.savez(cli / "data.npz", x=x, y=y)
    from landscape_dist.model.trajectory import write_trajectory
    write_trajectory(cli / "trajectory.h5", recorder.path)
    config = ld.config_from_dict({"model": {"source": str(cli / "source.keras")},
                                  "data": {"source": str(cli / "data.npz")}, "grid": GRID,
                                  "slices": [{"name": "random"},
                                             {"name": "pca", "directions": {"kind": "pca"}}],
                                  "cluster": {"backend": "local"}})
    ld.sweep(config, cli, progress=False)
    expected = ld.read_surface(cli / "surface.h5")
    for name in ("random", "pca"):
        np.testing.assert_array_equal(result[name].values["loss"], expected[name].values["loss"])
        np.testing.assert_array_equal(result[name].xcoordinates, expected[name].xcoordinates)
        assert result.numbers[name] == expected[name].meta["numbers"]
    fig = result.plot("contour", slice="pca")  # the command line's own figure, not a picture of it
    assert fig.axes[0].get_xlabel().startswith("PC 1") and fig.axes[0].collections
    import io

    png = io.BytesIO()
    fig.savefig(png, format="png")
    assert png.getvalue().startswith(b"\x89PNG")
    assert "slice-pca" in result._repr_html_()
    with pytest.raises(KeyError, match="one of \\['random', 'pca'\\]"):
        result.plot(slice="nope")


def test_a_path_of_another_model_and_a_model_that_cannot_be_rebuilt_are_refused(tmp_path):
    import keras

    model, x, y, recorder = _trained(epochs=1)
    small = keras.Sequential([keras.Input((1,)), keras.layers.Dense(3, name="small"),
                              keras.layers.Dense(1)])
    small.compile(loss="mse")
    out = tmp_path / "out"
    with pytest.raises(ValueError) as err:
        ld.landscape(small, (x, y), path=recorder, out=out, progress=False)
    assert str(err.value) == (
        "The 'path' argument was recorded from another model than the 'model' argument (tensor 0 "
        "('small/kernel') has shape (1, 3) in the model and (1, 64) in the path; 4 "
        "tensors, 10 weights in the model; 8 tensors, 8513 weights in the path). Record the "
        "path of this model's own fit.")
    assert not out.exists()

    class Unsaveable(keras.layers.Layer):  # registered nowhere, constructor arguments unsaved
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(units)

        def call(self, inputs):
            return self.dense(inputs)

    odd = keras.Sequential([keras.Input((1,)), Unsaveable(2), keras.layers.Dense(1)])
    odd.compile(loss="mse")
    with pytest.raises(ValueError) as err:
        ld.landscape(odd, (x, y), out=out, progress=False)
    text = str(err.value)
    assert text.startswith("The 'model' argument cannot be rebuilt from its .keras form, as its "
                           "workers rebuild it (") and "\n" not in text
    assert text.endswith("register it with @keras.saving.register_keras_serializable().")
    assert not out.exists()
    with pytest.raises(ValueError) as err:
        ld.landscape(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]), (x, y))
    assert str(err.value) == ("The 'model' argument must be compiled with a loss. Call "
                              "model.compile(loss=...) first.")


def test_on_ray_a_custom_layer_travels_and_equals_in_process(ray_cluster, tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="test_api_local")
    class Scaled(keras.layers.Layer):  # defined here: workers cannot import it, it travels
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], self.units), initializer="glorot_uniform")

        def call(self, inputs):
            return 0.5 * inputs @ self.w

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((1,)), Scaled(8), keras.layers.Dense(1)])
    model.compile(loss="mse")
    from landscape_dist.model.examples import parabola_data
    x, y = parabola_data(32)
    out = tmp_path / "ray"
    on_ray = ld.landscape(model, {"train": (x, y), "test": (x[:16], y[:16])}, grid=GRID,
                          workers=2, out=out, progress=False)
    here = ld.landscape(model, {"train": (x, y), "test": (x[:16], y[:16])}, grid=GRID,
                        in_process=True, progress=False)
    assert (out / "surface.h5").is_file() and (out / "model.keras").is_file()
    assert on_ray.out == out and here.out is None
    for name, values in here["random"].values.items():
        np.testing.assert_allclose(on_ray["random"].values[name], values, rtol=1e-6)


@pytest.mark.slow
def test_the_inline_view_draws_in_a_headless_browser(tmp_path):
    """The view a notebook shows (``_repr_html_``), placed in a page as a notebook places an
    output, draws both slices' plots with no script error, in a real browser."""
    from test_outputs import _browse

    model, x, y, recorder = _trained(epochs=3)
    result = ld.landscape(model, (x, y), path=recorder, slices=["random", "pca"], grid=GRID,
                          in_process=True, progress=False)
    view = result.html(full=True)  # as the session's first view brings it
    assert len(result.html(full=False)) < 500_000 < len(view)  # later views leave plotly.js out
    page = tmp_path / "notebook.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    f"<div class='output_html'>{view}</div></body></html>")
    dom = _browse(page, tmp_path, "--dump-dom").stdout
    assert 'data-plots="2">2 plots drawn<' in dom and 'class="error"' not in dom  # one per slice
    assert dom.count('class="main-svg"') >= 4 and "gl-container" in dom  # contours and 3-D


@pytest.mark.parametrize("command", ["train", "sweep", "run", "curvature", "sharpness"])
def test_library_commands_take_a_config_or_the_path_of_its_yaml_file(command, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {x: {points: 1}}\n")
    with pytest.raises(ValueError) as err:  # the path is loaded, and its settings checked
        getattr(ld, command)(str(bad), tmp_path / "out")
    assert str(err.value) == "The 'grid.x.points' setting must be an integer >= 2. Got 1 instead."
    with pytest.raises(TypeError) as err:
        getattr(ld, command)({"grid": GRID}, tmp_path / "out")
    assert str(err.value) == ("The 'config' argument must be a Config (ld.load_config(...)) or the "
                              "path of a YAML file. Got dict instead.")
