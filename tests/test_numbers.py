"""Numbers from a surface: loss at the centre, local curvature, basin widths."""

import numpy as np
import pytest

from landscape_dist.config import config_from_dict
from landscape_dist.core.numbers import quadratic_fit, surface_numbers
from landscape_dist.commands import sweep
from landscape_dist.store.surface import read_surface


def test_a_quadratic_bowl_gives_its_own_curvature_and_widths():
    xs = ys = np.linspace(-1, 1, 21)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    z = 1.0 + 2.0 * xx ** 2 + 0.5 * yy ** 2 + 0.3 * xx * yy
    numbers = surface_numbers(xs, ys, z)
    assert numbers["loss_at_centre"] == 1.0 and numbers["centre_on_grid"]
    np.testing.assert_allclose(numbers["quadratic"]["hessian"], [[4.0, 0.3], [0.3, 1.0]], atol=1e-9)
    assert numbers["quadratic"]["rms_residual"] < 1e-12
    widths = numbers["basin_width"]
    # along x: 2 x^2 = 0.1 and 1.0; linear interpolation between grid points overestimates a little
    assert widths["x@1.1"] == pytest.approx(2 * np.sqrt(0.05), abs=0.02)
    assert widths["x@2"] == pytest.approx(2 * np.sqrt(0.5), abs=0.02)
    assert widths["y@1.1"] == pytest.approx(2 * np.sqrt(0.2), abs=0.03)
    assert widths["y@2"] is None  # 0.5 y^2 = 1 at |y| = 1.41, beyond the grid


def test_one_dimensional_slices_and_diverged_points():
    xs = np.linspace(-2, 2, 41)
    z = 3.0 + xs ** 2
    z[-3:] = np.nan  # diverged at the right edge: the basin ends there
    numbers = surface_numbers(xs, None, z)
    np.testing.assert_allclose(numbers["quadratic"]["hessian"], [[2.0]], atol=1e-9)
    assert numbers["basin_width"]["x@1.1"] == pytest.approx(2 * np.sqrt(0.3), abs=0.02)
    # at 2x the loss would be crossed at 1.73, but the first diverged point (1.8) comes first
    assert numbers["basin_width"]["x@2"] == pytest.approx(1.8 + np.sqrt(3.0), abs=0.02)
    fit = quadratic_fit(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 2.0, 5.0]))
    np.testing.assert_allclose(fit["hessian"], [[2.0]], atol=1e-12)


def test_the_summary_and_the_file_carry_the_numbers(tmp_path):
    config = config_from_dict({"grid": {"x": {"points": 5}, "y": {"points": 5}, "tile": [5, 5]}})
    summary = sweep(config, tmp_path, in_process=True, progress=False)
    numbers = summary["slices"]["random"]["numbers"]
    surface = read_surface(tmp_path / "surface.h5")["random"]
    assert surface.meta["numbers"] == numbers
    assert numbers["loss_at_centre"] == surface.values["loss"][2, 2]
    assert set(numbers["basin_width"]) == {"x@1.1", "x@2", "y@1.1", "y@2"}
