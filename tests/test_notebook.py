"""``scripts/quickstart.ipynb`` runs headless in a Jupyter kernel as a user pastes it: figures
drawn, the interactive view shown, no error, and its numbers equal the command line's sweep on
the same inputs. On the 2-core test machine the sweep runs in process (``workers=2`` is replaced
by ``in_process=True``): Ray's start in a fresh kernel would take most of a minute there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "scripts" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs_and_equals_the_command_line(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    import landscape_dist as ld

    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        cell.source = cell.source.replace("workers=2", "in_process=True")
    keep = tmp_path / "inputs"
    nb.cells.append(nbformat.v4.new_code_cell(  # the test's own cell: the inputs, for the CLI
        f"from landscape_dist.model.trajectory import write_trajectory\n"
        f"import pathlib; d = pathlib.Path({str(keep)!r}); d.mkdir()\n"
        f"model.save(d / 'model.keras'); np.savez(d / 'data.npz', x=x, y=y)\n"
        f"write_trajectory(d / 'trajectory.h5', recorder.path)\n"
        f"np.savez(d / 'values.npz', **{{n: s.values['loss'] for n, s in result.slices.items()}})"))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 2
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert html and "slice-pca" in html[0] and "slice-random" in html[0]
    cli = tmp_path / "cli"
    cli.mkdir()
    (cli / "trajectory.h5").write_bytes((keep / "trajectory.h5").read_bytes())
    config = ld.config_from_dict({
        "model": {"source": str(keep / "model.keras")}, "data": {"source": str(keep / "data.npz")},
        "grid": {"x": {"points": 11}, "y": {"points": 11}}, "cluster": {"backend": "local"},
        "slices": [{"name": "random"}, {"name": "pca", "directions": {"kind": "pca"}}]})
    ld.sweep(config, cli, progress=False)
    expected = ld.read_surface(cli / "surface.h5")
    got = np.load(keep / "values.npz")
    for name in ("random", "pca"):
        np.testing.assert_array_equal(got[name], expected[name].values["loss"])
