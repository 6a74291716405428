"""``info``: what a surface file holds, finished or not."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from ..planes.base import kind_of
from ..store.surface import check_surface, open_surface, read_attr

# what every kind's metadata holds of its settings (PlaneKind.common_meta), before what the kind
# names for summaries (PlaneKind.summary_keys)
_SETTINGS = ("kind", "normalization", "ignore", "seed")


def info(path: str | Path) -> dict:
    """What a surface file holds: per slice its grid, quantities, done fraction and direction
    settings; the configuration and package versions; finished or not."""
    check_surface(path, unfinished=True)
    with open_surface(path) as f:
        info = {"file": str(path), "complete": bool(f.attrs.get("complete", True)),
                "versions": read_attr(f.attrs.get("versions", "{}")),
                "config": _yaml(f.attrs.get("config", "")), "slices": {}}
        for name in json.loads(f.attrs["slices"]):
            g = f["slices"][name]
            done = g["done"][...]
            quantities = []
            g["values"].visititems(lambda key, item: quantities.append(key)
                                   if isinstance(item, h5py.Dataset) else None)
            meta = {k: read_attr(v) for k, v in g.attrs.items()}
            grid = {"x": [float(g["xcoordinates"][0]), float(g["xcoordinates"][-1]),
                          int(len(g["xcoordinates"]))]}
            if "ycoordinates" in g:
                grid["y"] = [float(g["ycoordinates"][0]), float(g["ycoordinates"][-1]),
                             int(len(g["ycoordinates"]))]
            info["slices"][name] = {
                "grid": grid, "points": int(done.size), "done": int(done.sum()),
                "quantities": quantities, "path": "path" in g,
                "directions": _directions(meta)}
    return info


def _directions(meta: dict) -> dict:
    """A slice's direction settings and what its plane's kind names for summaries."""
    keys = dict.fromkeys((*_SETTINGS, *kind_of(meta).summary_keys))
    return {k: meta[k] for k in keys if k in meta}


def _yaml(text) -> dict:
    import yaml

    text = text.decode() if isinstance(text, bytes) else str(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}
