"""What the command line says: short human summaries of each command's result, what a surface
file holds (``landscape-dist info``), and TensorFlow imported without its start-up banners."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

# Lines TensorFlow's C++ runtime prints while it loads, before any logging setting applies.
_BANNERS = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"Could not find cuda drivers|cpu_feature_guard|This TensorFlow binary is optimized|"
    r"To enable the following instructions|rebuild TensorFlow with the appropriate compiler|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning|failed call to cuInit")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up banners removed from stderr (anything else written to
    stderr meanwhile is passed on afterwards). The C++ runtime writes them to file descriptor 2
    directly, so they are captured there. (Importing it in a thread beside Ray's start-up was
    tried: other imports of TensorFlow's modules from the main thread meanwhile can meet the
    import lock's deadlock detection.)"""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace")
    kept = [line for line in text.splitlines() if line.strip() and not _BANNERS.search(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def sweep_lines(summary: dict) -> list[str]:
    """A line per slice and one for the whole sweep."""
    lines, points, seconds = [], 0, 0.0
    for name, info in summary.get("slices", {}).items():
        points += info["points"]
        seconds += info.get("seconds") or 0.0
        extra = f", {info['nonfinite_points']} non-finite" if info.get("nonfinite_points") else ""
        resumed = f", {info['tiles_resumed']} tiles resumed" if info.get("tiles_resumed") else ""
        refined = info.get("refinement")
        count = (f"{refined['evaluated']:,} of {info['points']:,} points evaluated (refined; the "
                 f"rest interpolated)" if refined else f"{info['points']:,} points")
        subset = next(iter((info.get("subset") or {}).values()), None)
        draft = (f", draft on {subset['examples']:,} of {subset['of']:,} examples (loss_stderr "
                 f"stored)" if subset else "")
        lines.append(f"  slice '{name}': {count}, "
                     f"{_rate(info.get('points_per_s'))} points/s{resumed}{draft}{extra}")
    head = (f"swept {len(lines)} slice{'s' * (len(lines) != 1)}, {points:,} points in "
            f"{seconds:.1f} s of evaluation; surface: {summary.get('surface')}")
    return [head] + lines


def summary_lines(command: str, result, out: str | None) -> list[str]:
    """The human summary of a command's result (what the JSON says, shortly)."""
    if command == "train":
        return [f"trained: {result['checkpoints']} checkpoints recorded, final loss "
                f"{result['final'].get('loss', float('nan')):.5g}; {result['model']}, "
                f"{result['trajectory']}"]
    if command == "sweep":
        return sweep_lines(result)
    if command == "curvature":
        return [f"curvature: top eigenvalues {', '.join(f'{v:.5g}' for v in result['top_eigenvalues'])}; "
                f"smallest {result['min_eigenvalue']:.5g}; trace {result['trace']['estimate']:.5g} "
                f"+- {result['trace']['stderr']:.2g}; {result['file']}, {result['figure']}"]
    if command == "plot":
        return [f"wrote {len(result)} files" + (f" in {Path(result[0]).parent}" if result else "")]
    if command == "run":
        lines = []
        train = result.get("train", {})
        if train.get("resumed"):
            lines.append("training skipped (resuming an unfinished sweep)")
        elif train:
            lines += summary_lines("train", train, out)
        lines += sweep_lines(result["sweep"])
        if "curvature" in result:
            lines += summary_lines("curvature", result["curvature"], out)
        lines.append(f"{len(result.get('images', []))} images and files in {out}; "
                     f"summary: {Path(out) / 'summary.json'}; {result.get('seconds', 0):.1f} s in all")
        return lines
    return []


def describe_surface(path: str | Path) -> dict:
    """What a surface file holds: per slice its grid, quantities, done fraction and direction
    settings; the configuration and package versions; finished or not."""
    import h5py

    from .store.surface import _attr, check_surface

    check_surface(path, unfinished=True)
    with h5py.File(path, "r") as f:
        info = {"file": str(path), "complete": bool(f.attrs.get("complete", True)),
                "versions": _attr(f.attrs.get("versions", "{}")),
                "config": _yaml(f.attrs.get("config", "")), "slices": {}}
        for name in json.loads(f.attrs["slices"]):
            g = f["slices"][name]
            done = g["done"][...]
            quantities = []
            g["values"].visititems(lambda key, item: quantities.append(key)
                                   if isinstance(item, h5py.Dataset) else None)
            meta = {k: _attr(v) for k, v in g.attrs.items()}
            grid = {"x": [float(g["xcoordinates"][0]), float(g["xcoordinates"][-1]),
                          int(len(g["xcoordinates"]))]}
            if "ycoordinates" in g:
                grid["y"] = [float(g["ycoordinates"][0]), float(g["ycoordinates"][-1]),
                             int(len(g["ycoordinates"]))]
            info["slices"][name] = {
                "grid": grid, "points": int(done.size), "done": int(done.sum()),
                "quantities": quantities, "path": "path" in g,
                "directions": {k: meta[k] for k in ("kind", "normalization", "ignore", "seed",
                                                    "which", "eigenvalues", "cosine",
                                                    "explained_variance_ratio") if k in meta}}
    return info


def _yaml(text) -> dict:
    import yaml

    text = text.decode() if isinstance(text, bytes) else str(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def info_lines(info: dict) -> list[str]:
    """``describe_surface``'s answer as text."""
    versions = info.get("versions") or {}
    lines = [f"{info['file']}: {'complete' if info['complete'] else 'UNFINISHED'} surface file, "
             f"{len(info['slices'])} slice{'s' * (len(info['slices']) != 1)}; written with "
             + ", ".join(f"{k} {v}" for k, v in versions.items() if v)]
    for name, s in info["slices"].items():
        axes = "; ".join(f"{a} {lo:g}..{hi:g} ({n} points)" for a, (lo, hi, n) in s["grid"].items())
        lines.append(f"  slice '{name}': {axes}; {s['done']:,} of {s['points']:,} points done "
                     f"({100 * s['done'] / max(1, s['points']):.0f}%)")
        lines.append(f"    quantities: {', '.join(s['quantities'])}; path: "
                     f"{'yes' if s['path'] else 'no'}")
        lines.append("    directions: " + ", ".join(f"{k} {v}" for k, v in s["directions"].items()))
    config = info.get("config") or {}
    if isinstance(config, dict):
        for section in ("model", "data", "evaluation"):
            if section in config:
                lines.append(f"  {section}: " + ", ".join(f"{k} {v}" for k, v in config[section].items()))
    return lines
