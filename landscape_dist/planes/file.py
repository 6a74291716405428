"""``kind: file``: directions read from a file, checked against the model's layout.

Files: an ``.npz`` holding ``directions`` (k, size) and the layout as ``layout_names`` and
``layout_shapes`` (JSON text, as :func:`save_directions` writes them), or a surface file, whose
slice ``slice`` (default: the first) gives its plane's directions. The centre is the configured one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.schema import DirectionConfig, must
from ..core.layout import WeightLayout
from ..core.plane import Plane
from ..errors import SourceError
from ..model.trajectory import open_hdf5
from .base import PlaneKind
from .checks import check_directions

FILE = {"file": "'file' parameter"}


@dataclass(frozen=True)
class FileDirections(DirectionConfig):
    """Where the directions are: an .npz or a surface file (and which of its slices)."""

    normalization: str = "none"
    ignore: str = "none"
    file: str = ""
    slice: str | None = None
    unused = ("normalization", "ignore")
    unused_why = "its directions are the file's, as they were saved"

    def __post_init__(self):
        super().__post_init__()
        if self.kind == "file" and not self.file:
            raise must("file", "the path of an .npz of directions or a surface .h5 file", self.file)


def save_directions(path, directions: np.ndarray, layout: WeightLayout) -> None:
    """Write directions (k, size) and their layout to an .npz that ``kind: file`` reads."""
    attrs = layout.to_attrs()
    np.savez(path, directions=np.atleast_2d(np.asarray(directions, np.float32)),
             layout_names=np.array(attrs["layout_names"]), layout_shapes=np.array(attrs["layout_shapes"]))


def _read(path: Path, slice_name: str | None):
    """(directions (k, size), layout) from an .npz or a surface file."""
    if not path.is_file():
        raise SourceError(f"The {{file}} names '{path}', which does not exist.", FILE)
    try:
        if path.suffix == ".npz":
            with np.load(path) as f:
                layout = WeightLayout.from_attrs({k: str(f[k]) for k in ("layout_names", "layout_shapes")})
                return np.asarray(f["directions"], np.float64), layout
        with open_hdf5(path, "directions file", "Give an .npz written by save_directions or a "
                       "surface file.", SourceError) as f:
            names = json.loads(f.attrs["slices"])
            name = slice_name or names[0]
            if name not in names:
                raise SourceError(f"The {{file}} names '{path}', which has no slice {name!r} (it has "
                                  f"{names}).", FILE)
            plane = f["slices"][name]["plane"]
            return np.asarray(plane["directions"][...], np.float64), WeightLayout.from_attrs(plane.attrs)
    except SourceError:
        raise
    except (OSError, KeyError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SourceError(f"The {{file}} names '{path}', which holds no directions with their "
                          f"layout ({reason}). Give an .npz written by save_directions or a "
                          f"surface file.", FILE) from None


class FilePlane(PlaneKind):
    """Directions from a file; the first ``k`` of them."""

    config = FileDirections

    def caption(self, meta):
        return f"directions from {Path(str(meta.get('file'))).name}"

    def build(self, cfg, context, k):
        path = Path(cfg.file)
        directions, layout = _read(path, cfg.slice)
        if layout.shapes != context.layout.shapes:
            raise SourceError(f"The {{file}} names '{path}', whose directions are for another "
                              f"architecture ({len(layout.shapes)} tensors, {layout.size} weights) "
                              f"than the model ({len(context.layout.shapes)} tensors, "
                              f"{context.layout.size} weights).", FILE)
        if len(directions) < k:
            raise SourceError(f"The {{file}} names '{path}', which holds {len(directions)} "
                              f"direction(s); a {k}-D slice needs {k}.", FILE)
        check_directions(directions, context.layout.size, k,
                         f"The {{file}} names '{path}', whose directions", words=FILE,
                         fix="Give a file of directions saved for this model.")
        meta = {"kind": cfg.kind, "normalization": "none", "ignore": "none", "seed": cfg.seed,
                "centre_norm": float(np.linalg.norm(context.centre)), "file": str(path)}
        return Plane.make(context.centre, directions[:k], context.layout, meta)
