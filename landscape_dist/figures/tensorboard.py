"""TensorBoard logs of a surface file: one run per slice under ``OUT/tensorboard/<slice>/``.

Each run holds the slice's figures as images (the ones the ``png`` format draws), its surface as
a 3-D mesh per quantity for TensorBoard's mesh plugin (2-D slices), the true loss and metrics along
the recorded training path as scalars against the training step, and the run's configuration as
text. Further training runs (``train.runs``) are runs of their own, ``<slice>/run1``...

Written with TensorFlow's own summary writer; TensorFlow and TensorBoard are imported when the
logs are written, and a missing ``tensorboard`` package is refused in one line.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

from ..errors import OutputError
from .common import heights, on_slice, quantities

LOG_DIR = "tensorboard"  # under the output directory
EVENTS = "events.out.tfevents.*"


def require_tensorboard() -> None:
    """Refuse, in one line, where the ``tensorboard`` package (TensorFlow's summaries and the
    mesh plugin) cannot be imported."""
    try:
        import tensorboard.plugins.mesh.summary_v2  # noqa: F401
    except ImportError:
        raise OutputError("The output format 'tensorboard' needs the tensorboard package, which "
                          "is not installed here. Install it with "
                          "pip install 'landscape-dist[tensorboard]', or use another format.") \
            from None


def triangle_mesh(xs: np.ndarray, ys: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The grid as triangles: vertices (ny*nx, 3) of (x, y, height), grid point (row j, column i)
    being vertex j*nx + i, and faces (F, 3) of vertex indices, two per grid cell, each kept only
    where its three corners have a finite height. A vertex of non-finite height, in no face,
    stands at the lowest finite height (so that it does not stretch the viewer's bounds)."""
    ny, nx = z.shape
    X, Y = np.meshgrid(xs, ys)
    ok = np.isfinite(z)
    floor = float(z[ok].min()) if ok.any() else 0.0
    vertices = np.column_stack([X.ravel(), Y.ravel(), np.where(ok, z, floor).ravel()])
    index = np.arange(ny * nx).reshape(ny, nx)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, 1:].ravel(), index[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], axis=1), np.stack([a, c, d], axis=1)])
    finite = ok.ravel()
    return vertices, faces[finite[faces].all(axis=1)]


def vertex_colours(z: np.ndarray) -> np.ndarray:
    """Viridis RGB (N, 3) uint8 of heights ``z`` (N,) over their finite range (grey where not
    finite)."""
    from matplotlib import colormaps

    ok = np.isfinite(z)
    rgb = np.full((len(z), 3), 128, np.uint8)
    if ok.any():
        lo, hi = float(z[ok].min()), float(z[ok].max())
        scaled = (z[ok] - lo) / (hi - lo) if hi > lo else np.zeros(int(ok.sum()))
        rgb[ok] = np.round(colormaps["viridis"](scaled)[:, :3] * 255).astype(np.uint8)
    return rgb


def figures_of_slices(surface_file: Path, surfaces: dict, out: Path,
                      cfg) -> dict[str, dict[str, Path]]:
    """The figures the ``png`` format draws of ``surface_file`` (its slices ``surfaces``, as
    read), written into ``out``, by slice: slice name ->
    {tag: file}, the tag being the file's name after ``<slice>_`` (``contour``, ``3d``...); a
    figure of several seeds (``<group>_seeds``) goes to each slice of the group."""
    from .static import plot_surface_file

    by_slice: dict[str, dict[str, Path]] = {name: {} for name in surfaces}
    groups: dict[str, list[str]] = {}
    for name, surface in surfaces.items():
        if surface.meta.get("seed_group"):
            groups.setdefault(surface.meta["seed_group"], []).append(name)
    longest_first = sorted(surfaces, key=len, reverse=True)
    for file in map(Path, plot_surface_file(surface_file, out, cfg, ".png")):
        stem = file.stem
        members = [m for g, ms in groups.items() if stem in (f"{g}_seeds", f"{g}_seeds_1d")
                   for m in ms]
        for name in members:
            by_slice[name]["seeds"] = file
        if members:
            continue
        owner = next((n for n in longest_first if stem.startswith(f"{n}_")), None)
        if owner is not None:
            by_slice[owner][stem[len(owner) + 1:]] = file
    return by_slice


def write_tensorboard_logs(surface_file: Path, out: Path, cfg) -> list[str]:
    """Every slice of ``surface_file`` as a TensorBoard run under ``out/tensorboard/<slice>/``
    (event files of an earlier write there are replaced); returns the event files written."""
    require_tensorboard()
    import tensorflow as tf

    from ..store.surface import read_run_info, read_surface

    surfaces = read_surface(surface_file)
    config = yaml.safe_dump(read_run_info(surface_file)["config"], sort_keys=False)
    root = Path(out) / LOG_DIR
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        figures = figures_of_slices(Path(surface_file), surfaces, Path(scratch), cfg)
        for name, surface in surfaces.items():
            run = root / name
            with _writer(tf, run):
                _write_text(tf, surface, config)
                _write_images(tf, figures[name])
                if surface.ndim == 2:
                    _write_meshes(surface, cfg)
                if surface.path is not None:
                    _write_path(tf, surface, surface.path)
            written += _events(run)
            for label, path in surface.runs.items():  # further training runs
                with _writer(tf, run / label):
                    _write_path(tf, surface, path)
                written += _events(run / label)
    return [str(p) for p in written]


@contextmanager
def _writer(tf, path: Path):
    """A fresh summary writer for the run at ``path`` (its earlier event files removed, so that a
    second write replaces the first), set as the default and closed on leaving."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob(EVENTS):
        old.unlink()
    writer = tf.summary.create_file_writer(str(path))
    try:
        with writer.as_default():
            yield writer
    finally:
        writer.close()


def _events(run: Path) -> list[Path]:
    return sorted(run.glob(EVENTS))


def _write_text(tf, surface, config: str) -> None:
    """The run's configuration and the slice's caption, as text."""
    from .static import caption_text

    indented = "\n".join(f"    {line}" for line in config.splitlines())  # Markdown code block
    tf.summary.text("config", indented, step=0)
    tf.summary.text("slice", f"slice '{surface.name}': {caption_text(surface)}", step=0)


def _write_images(tf, figures: dict[str, Path]) -> None:
    """Each figure as an image ``figures/<tag>``."""
    for tag, file in figures.items():
        image = tf.io.decode_png(file.read_bytes(), channels=4)
        tf.summary.image(f"figures/{tag}", image[None], step=0)


def _write_meshes(surface, cfg) -> None:
    """Each quantity of a 2-D slice as a mesh ``mesh/<quantity>`` at the heights the 3-D views
    draw (``plot.zmin``/``zmax``/``log_z``), coloured by height; and the path, where it holds the
    quantity and the slice draws it (``plot.show_path``), as a point cloud
    ``path_mesh/<quantity>`` at its true heights."""
    from tensorboard.plugins.mesh import summary_v2 as mesh

    from .static import draws_path

    for quantity in quantities(surface):
        z, scale = heights(surface.shown[quantity], cfg)
        vertices, faces = triangle_mesh(surface.xcoordinates, surface.ycoordinates, z)
        mesh.mesh(f"mesh/{quantity}", vertices=vertices[None].astype(np.float32),
                  faces=faces[None].astype(np.int32), colors=vertex_colours(vertices[:, 2])[None],
                  step=0, description=f"{scale}{quantity} over slice '{surface.name}'")
        path = surface.path
        if (not draws_path(surface, cfg) or quantity not in path.values
                or path.coords.shape[1] != 2):
            continue
        pz, _ = heights(path.values[quantity], cfg)
        keep = np.all(np.isfinite(path.coords), axis=1) & np.isfinite(pz)
        if keep.any():
            points = np.column_stack([path.coords[keep], pz[keep]]).astype(np.float32)
            red = np.tile(np.array([[220, 30, 30]], np.uint8), (len(points), 1))
            mesh.mesh(f"path_mesh/{quantity}", vertices=points[None], colors=red[None], step=0,
                      description=f"the training path at its true {scale}{quantity}")


def _write_path(tf, surface, path) -> None:
    """Along the path, against the training step: the true value of each quantity
    (``path/<quantity>``), the slice's value where the path is projected
    (``slice_at_path/<quantity>``), and how far the path is from the centre and off the plane."""
    steps = np.asarray(path.step, dtype=np.int64)
    series = {f"path/{q}": np.asarray(v, np.float64) for q, v in path.values.items()}
    for quantity in path.values:
        if quantity in surface.shown and path.coords.shape[1] == surface.ndim:
            series[f"slice_at_path/{quantity}"] = on_slice(surface, quantity, path.coords)
    series["path_geometry/distance"] = np.asarray(path.distance, np.float64)
    series["path_geometry/relative_residual"] = np.asarray(path.relative_residual, np.float64)
    for tag, values in series.items():
        for step, value in zip(steps, values):
            tf.summary.scalar(tag, float(value), step=int(step))
