"""Pure NumPy core: directions, PCA, projection, grid and tiles."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landscape_dist.core.directions import TrajectoryPCA, cosine, normalize_direction, random_directions
from landscape_dist.core.grid import axis_coordinates, coarsest_stride, split_tiles
from landscape_dist.core.layout import WeightLayout
from landscape_dist.core.projection import off_plane_fraction, project_path

LAYOUT = WeightLayout(("conv/kernel", "conv/bias", "dense/kernel", "dense/bias"),
                      ((3, 3, 2, 4), (4,), (36, 5), (5,)))


def test_layout_round_trip(rng):
    flat = rng.normal(size=LAYOUT.size).astype(np.float32)
    assert np.array_equal(LAYOUT.flatten(LAYOUT.unflatten(flat)), flat)
    assert LAYOUT.low_rank_mask().sum() == 4 + 5


def test_filter_normalisation_gives_each_unit_the_centre_units_norm(rng):
    centre = rng.normal(size=LAYOUT.size)
    d = normalize_direction(rng.normal(size=LAYOUT.size), centre, LAYOUT, "filter", "biasbn")
    for dt, wt in zip(LAYOUT.unflatten(d), LAYOUT.unflatten(centre)):
        if dt.ndim >= 2:
            units_d = np.linalg.norm(dt.reshape(-1, dt.shape[-1]), axis=0)
            units_w = np.linalg.norm(wt.reshape(-1, wt.shape[-1]), axis=0)
            np.testing.assert_allclose(units_d, units_w, rtol=1e-5)
        else:
            assert np.all(dt == 0)  # biases ignored


def test_layer_model_and_none_normalisation(rng):
    centre = rng.normal(size=LAYOUT.size)
    raw = rng.normal(size=LAYOUT.size)
    d = normalize_direction(raw, centre, LAYOUT, "layer", "none")
    for dt, wt in zip(LAYOUT.unflatten(d), LAYOUT.unflatten(centre)):
        assert np.linalg.norm(dt) == pytest.approx(np.linalg.norm(wt), rel=1e-5)
    d = normalize_direction(raw, centre, LAYOUT, "model", "none")
    assert np.linalg.norm(d) == pytest.approx(np.linalg.norm(centre), rel=1e-5)
    np.testing.assert_allclose(normalize_direction(raw, centre, LAYOUT, "none", "none"), raw, rtol=1e-6)


def test_random_directions_are_seeded_and_nearly_orthogonal():
    centre = np.random.default_rng(0).normal(size=20000)
    layout = WeightLayout(("w",), ((200, 100),))
    a = random_directions(centre, layout, 2, np.random.default_rng(5))
    b = random_directions(centre, layout, 2, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert abs(cosine(a[0], a[1])) < 0.05


def _planar_path(rng, size=50, steps=30):
    u, v = np.linalg.qr(rng.normal(size=(size, 2)))[0].T
    end = rng.normal(size=size)
    t = np.linspace(0, 1, steps)
    path = end + np.outer(3 * (1 - t) ** 2, u) + np.outer(np.sin(4 * t) * (1 - t), v)
    return path, end, np.stack([u, v])


def test_pca_recovers_the_plane_of_a_planar_path(rng):
    path, end, basis = _planar_path(rng)
    pca = TrajectoryPCA(2).fit(path)
    assert pca.explained_variance_ratio_.sum() == pytest.approx(1.0, abs=1e-9)
    # the two subspaces agree: projecting the true basis onto the components loses nothing
    proj = basis @ pca.components_.T.astype(np.float64)
    np.testing.assert_allclose(np.linalg.svd(proj, compute_uv=False), [1, 1], atol=1e-5)


def test_pca_needs_enough_checkpoints(rng):
    with pytest.raises(ValueError, match="at least 3 checkpoints"):
        TrajectoryPCA(2).fit(rng.normal(size=(2, 10)))


def test_a_path_in_the_plane_projects_with_zero_residual(rng):
    path, end, basis = _planar_path(rng)
    directions = np.array([[2.0, 1.0], [0.5, -1.0]]) @ basis  # not orthonormal on purpose
    coords, residual, relative = project_path(path, end, directions)
    assert residual.max() < 1e-10
    np.testing.assert_allclose(coords @ directions + end, path, atol=1e-10)


def test_off_plane_part_is_reported(rng):
    path, end, basis = _planar_path(rng)
    normal = rng.normal(size=path.shape[1])
    normal -= basis.T @ (basis @ normal)
    normal /= np.linalg.norm(normal)
    lifted = path + np.outer(np.full(len(path), 0.5), normal)
    coords, residual, relative = project_path(lifted, end, basis)
    np.testing.assert_allclose(residual, 0.5, atol=1e-10)
    dist = np.linalg.norm(lifted - end, axis=1)
    assert off_plane_fraction(residual, dist) == pytest.approx(
        np.sqrt(len(path) * 0.25 / np.sum(dist ** 2)))


def test_axis_spacing():
    np.testing.assert_allclose(axis_coordinates(-2, 2, 5), [-2, -1, 0, 1, 2])
    np.testing.assert_allclose(axis_coordinates(-2, 2, 5, "cubic"), [-2, -0.25, 0, 0.25, 2])
    np.testing.assert_allclose(axis_coordinates(0, 1, 3), [0, 0.5, 1])


@pytest.mark.parametrize("shape, tile", [((7, 11), (3, 4)), ((1, 9), (1, 4)), ((5, 5), (5, 5)),
                                         ((6, 4), (1, 1))])
def test_split_then_place_is_the_identity(shape, tile):
    tiles = split_tiles(shape, tile)
    cover = np.zeros(shape, int)
    for t in tiles:
        cover[t.r0:t.r1, t.c0:t.c1] += 1
        assert t.shape[0] <= tile[0] and t.shape[1] <= tile[1]
    assert np.all(cover == 1)  # every point in exactly one tile
    placed = np.full(shape, np.nan)
    for t in tiles:  # each tile's points, row-major, as a worker returns them
        t.place(placed, t.points(np.arange(shape[1]), np.arange(shape[0])) @ [1, shape[1]])
    assert np.array_equal(placed, np.arange(shape[0] * shape[1]).reshape(shape))


def test_tile_points_are_row_major_x_then_y():
    xs, ys = np.array([0.0, 1.0, 2.0]), np.array([10.0, 20.0])
    (tile,) = split_tiles((2, 3), (2, 3))
    pts = tile.points(xs, ys)
    assert pts.tolist() == [[0, 10], [1, 10], [2, 10], [0, 20], [1, 20], [2, 20]]
    assert tile.points(xs, None).tolist() == [[0], [1], [2]]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(rows=st.integers(1, 70), cols=st.integers(1, 70), th=st.integers(1, 75),
       tw=st.integers(1, 75), order=st.sampled_from(["rows", "coarse_to_fine"]))
def test_tiles_partition_any_grid(rows, cols, th, tw, order):
    tiles = split_tiles((rows, cols), (th, tw), order)
    cover = np.zeros((rows, cols), dtype=int)
    for tile in tiles:
        assert 0 < tile.shape[0] <= th and 0 < tile.shape[1] <= tw
        cover[tile.rows, tile.cols] += 1
    assert (cover == 1).all()  # every point in exactly one tile
    assert [t.index for t in tiles] == list(range(len(tiles)))


def test_coarse_to_fine_order_completes_a_subsampled_grid_first():
    shape = (41, 33)
    tiles = split_tiles(shape, (4, 4), "coarse_to_fine")
    assert coarsest_stride(shape) == 4
    done = np.zeros(shape, bool)
    seen, checked = 0, []
    for tile in tiles:  # after the first tiles, the grid sub-sampled by 4, then by 2, is complete
        done[tile.rows, tile.cols] = True
        seen += tile.size
        if seen == 11 * 9:
            assert done[::4, ::4].all() and done.sum() == 11 * 9
            checked.append(4)
        if seen == 21 * 17:
            assert done[::2, ::2].all() and done.sum() == 21 * 17
            checked.append(2)
    assert checked == [4, 2]  # both moments came (row order reaches neither)
    assert done.all()
    values = np.arange(41 * 33, dtype=float).reshape(shape)
    placed = np.full(shape, np.nan)
    for t in tiles:
        t.place(placed, values[t.rows, t.cols].ravel())
    np.testing.assert_array_equal(placed, values)
