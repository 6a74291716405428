"""``curvature.h5``: the Hessian's spectrum at the centre, readable with h5py alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..core.flatness import Sharpness


def write_curvature(path: Path, result: dict, summary: dict, meta: dict) -> None:
    """``curvature.h5``: eigen/, trace/, density/, layers/ and flatness/ groups, settings and
    versions as attributes; written whole (a temporary file renamed into place)."""
    import h5py

    tmp = path.with_name(path.name + ".partial")
    eigen = result["eigen"]
    with h5py.File(tmp, "w") as f:
        for key, value in meta.items():
            f.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
        f.attrs["summary"] = json.dumps(summary)
        g = f.create_group("eigen")
        g["top_values"], g["top_vectors"] = eigen.top_values, eigen.top_vectors
        g["top_residuals"] = eigen.top_residuals
        g["min_value"], g["min_vector"], g["min_residual"] = (eigen.min_value, eigen.min_vector,
                                                               eigen.min_residual)
        g.attrs["lanczos_steps"], g.attrs["converged"] = eigen.steps, eigen.converged
        estimate, stderr, forms = result["trace"]
        g = f.create_group("trace")
        g["estimate"], g["stderr"], g["quadratic_forms"] = estimate, stderr, forms
        nodes, weights, grid, dens, sigma = result["density"]
        g = f.create_group("density")
        g["nodes"], g["weights"], g["grid"], g["density"] = nodes, weights, grid, dens
        g.attrs["sigma"] = sigma
        if "layers" in result:
            names, values, steps = result["layers"]
            g = f.create_group("layers")
            g["names"] = np.array(names, dtype=h5py.string_dtype())
            g["top_values"], g["lanczos_steps"] = values, steps
        if "flatness" in result:
            _write_flatness(f.create_group("flatness"), result["flatness"]["measures"],
                            summary.get("flatness", {}))
    os.replace(tmp, path)


def _write_flatness(group, measures: dict, entries: dict) -> None:
    """One group per flatness measure: its summary entry (value, source, settings, cost) as
    attributes; the best perturbation found (a sharpness) or the sigmas tried with the deviation
    estimated at each (PAC-Bayes), all evaluated."""
    for name, measure in measures.items():
        g = group.create_group(name)
        for key, value in entries.get(name, {}).items():
            g.attrs[key] = json.dumps(value) if value is None or isinstance(value, (list, dict)) \
                else value
        if isinstance(measure, Sharpness):
            g["perturbation"] = measure.perturbation
        else:
            g["trials"] = np.array(measure.trials, dtype=np.float64).reshape(-1, 2)
            g["trials"].attrs["columns"] = "sigma, estimated E[L(w + u)] - L(w)"
