"""What a sweep's grid values depend on, as plain data and digests: a resumed sweep must match it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..model.sources import DataSpec, ModelSpec, is_factory

_DIGEST_LIMIT = 1 << 30  # files larger than this are fingerprinted by size and mtime only


def file_digest(path) -> str | None:
    """sha256 of a file's bytes (size and mtime for very large files); for a directory of data,
    of its x.npy and y.npy; None if neither."""
    path = Path(path)
    if path.is_dir() and (path / "x.npy").is_file():
        return hashlib.sha256(" ".join(str(file_digest(path / name))
                                       for name in ("x.npy", "y.npy")).encode()).hexdigest()
    if not path.is_file():
        return None
    stat = path.stat()
    if stat.st_size > _DIGEST_LIMIT:
        return f"size={stat.st_size},mtime={stat.st_mtime_ns}"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(config: dict, model_bytes: bytes | None, data_source, centre_file=None,
                trajectory_file=None) -> dict:
    """The run's fingerprint: model and data sources with digests of their files, the centre and
    trajectory files' digests, the training settings and each slice's directions and grid.

    ``config``: the resolved configuration as plain data (``Config.to_dict()``); ``model_bytes``:
    the model file's bytes, if it came from a file. A ``module:function`` source is fingerprinted
    by what it returns (``<model|data>.returns.<source>``): the data's examples, the model's
    architecture and loss, and its weights where they are the centre (no ``centre_file``).
    """
    model = {"source": config["model"]["source"],
             "file": hashlib.sha256(model_bytes).hexdigest() if model_bytes else None,
             "centre": str(centre_file) if centre_file else None,
             "centre_file": file_digest(centre_file) if centre_file else None}
    returns = _model_returns(config, centre_file is None) if model_bytes is None else {}
    if returns:  # only then: journals of other sources keep resuming as before
        model["returns"] = returns
    sources = data_source if isinstance(data_source, list) else [data_source]
    data = {"source": config["data"]["source"],
            "file": [file_digest(s) for s in data_source] if isinstance(data_source, list)
            else file_digest(data_source)}
    returns = {s: DataSpec(s, num_shards=config["data"].get("shards") or 1).content_digest()
               for s in sources if isinstance(s, str) and is_factory(s)}
    if returns:
        data["returns"] = returns
    return {
        "model": model,
        "data": data,
        "trajectory": ([file_digest(f) for f in trajectory_file] if isinstance(trajectory_file, list)
                       else file_digest(trajectory_file)) if trajectory_file else None,
        "train": config["train"],  # a resumed 'run' keeps its trained model: refuse other training
        # a draft on a subset of the examples never resumes into a sweep on all of them
        "evaluation": {k: config["evaluation"].get(k) for k in ("examples", "examples_seed")},
        "slices": [{"name": sl["name"], "directions": sl["directions"], "grid": sl["grid"],
                    "quantities": sl.get("quantities")} for sl in config["slices"]],
    }


def _model_returns(config: dict, with_weights: bool) -> dict:
    """{source: digest of the model it builds} for a ``module:function`` model source, else {}."""
    source = config["model"]["source"]
    if not (isinstance(source, str) and is_factory(source)):
        return {}
    spec = ModelSpec.from_source(source, bool(config["model"].get("unsafe_deserialization")))
    return {source: spec.content_digest(with_weights)}


def plane_digest(centre: np.ndarray, directions: np.ndarray, non_trainable=None,
                 non_trainable_directions=None) -> str:
    """sha256 of a plane's centre and directions as float32, and of the non-trainable values and
    their directions where the plane has its own."""
    digest = hashlib.sha256(np.ascontiguousarray(centre, np.float32).tobytes())
    digest.update(np.ascontiguousarray(directions, np.float32).tobytes())
    for group in [non_trainable or []] + list(non_trainable_directions or []):
        for value in group:
            digest.update(np.ascontiguousarray(value, np.float64).tobytes())
    return digest.hexdigest()
