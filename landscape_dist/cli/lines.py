"""What the command line says: short human summaries of each command's result."""

from __future__ import annotations

from pathlib import Path

from ..core.fidelity import describe as describe_fidelities


def rate(value) -> str:
    """A rate at the precision it means: whole numbers from 100 up (``1,234``), three
    significant digits below (``57.3``, ``0.412``); ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 99.95 else f"{value:.3g}"


def number(value) -> str:
    """A stored setting or statistic as text: floats to three significant digits (``-0.0092``,
    ``2.56e-30``), lists item by item, anything else as it is."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(number(v) for v in value) + "]"
    return str(value)


def _amount(seconds: float) -> str:
    """Seconds as whole seconds, minutes or hours (``40 s``, ``12 min``, ``3.4 h``)."""
    if seconds < 119.5:
        return f"{seconds:.0f} s"
    if seconds < 7170:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"


def duration(seconds: float) -> str:
    """An estimated time: ``under 1 s``, else ``about 40 s`` (minutes and hours for long ones)."""
    return "under 1 s" if seconds < 1 else f"about {_amount(seconds)}"


def duration_span(low: float, high: float) -> str:
    """Estimated bounds: one time where both read the same, else ``up to about 40 s`` (from under
    a second) or ``about 12 s to 40 s``."""
    if high < 1 or (low >= 1 and _amount(low) == _amount(high)):
        return duration(high)
    if low < 1:
        return f"up to about {_amount(high)}"
    return f"about {_amount(low)} to {_amount(high)}"


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
        if info.get("fidelity"):
            count = f"{info['points']:,} points ({describe_fidelities(info['fidelity'])})"
        subset = next(iter((info.get("subset") or {}).values()), None)
        draft = (f", draft on {subset['examples']:,} of {subset['of']:,} examples (loss_stderr "
                 f"stored)" if subset else "")
        lines.append(f"  slice '{name}': {count}, "
                     f"{rate(info.get('points_per_s'))} points/s{resumed}{draft}{extra}")
        if info.get("barrier"):  # kind: curve
            lines.append(_barrier_line(info))
    n = len(summary.get("slices", {}))
    head = (f"swept {n} slice{'s' * (n != 1)}, {points:,} points in "
            f"{seconds:.1f} s of evaluation; surface: {summary.get('surface')}")
    return [head] + lines


def _barrier_line(info: dict) -> str:
    """A curve slice's barriers on its main loss, and how its bend came about."""
    ordered = sorted(info["barrier"].items(), key=lambda item: item[0] != "line")  # line first
    heights = ", ".join(f"{name} {'-' if value is None else f'{value:.4g}'}"
                        for name, value in ordered)
    bend = info.get("bend_training") or {}
    return (f"    barrier on {info.get('barrier_on', 'loss')}: {heights} (bend "
            f"{bend.get('status')}, {bend.get('epochs')} epochs)")


def _flatness_lines(flatness: dict | None) -> list[str]:
    """The flatness measures at the centre, one line, each named with its value (PAC-Bayes:
    1/sigma^2 and sigma)."""
    if not flatness:
        return []
    parts = []
    for name, entry in flatness.items():
        value = entry["value"]  # None: 1/sigma^2 for sigma 0 (PAC-Bayes), else not evaluated
        missing = "inf" if "sigma" in entry else "-"
        text = f"{name.replace('_', ' ')} {missing if value is None else f'{value:.4g}'}"
        if "sigma" in entry:
            text += f" (sigma {entry['sigma']:.4g})"
        parts.append(text)
    return ["flatness: " + "; ".join(parts)]


def summary_lines(command: str, result, out: str | None) -> list[str]:
    """The human summary of a command's result (what the JSON says, shortly)."""
    if command == "train":
        last = result.get("fit_last_epoch", {}).get("loss")
        fit = f" (Keras's last-epoch mean {last:.5g})" if last is not None else ""
        return [f"trained: {result['checkpoints']} checkpoints recorded, final loss "
                f"{result['final'].get('loss', float('nan')):.5g} at the recorded weights{fit}; "
                f"{result['model']}, {result['trajectory']}"]
    if command == "sweep":
        return sweep_lines(result)
    if command == "curvature":
        return [f"curvature: top eigenvalues {', '.join(f'{v:.5g}' for v in result['top_eigenvalues'])}; "
                f"smallest {result['min_eigenvalue']:.5g}; trace {result['trace']['estimate']:.5g} "
                f"+- {result['trace']['stderr']:.2g}; {result['file']}, {result['figure']}"
                ] + _flatness_lines(result.get("flatness"))
    if command == "sharpness":
        return [f"sharpness: {name}, {s['checkpoints']} checkpoints, largest "
                f"{s['operator'].replace('_', ' ')} eigenvalue {number(s['max_sharpness'])}, "
                f"threshold {s['threshold'] or 'none'}" for name, s in result["runs"].items()] + [
                f"{result['file']}, {result['figure']}"]
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
        if "sharpness" in result:
            lines += summary_lines("sharpness", result["sharpness"], out)
        lines.append(f"{len(result.get('images', []))} images and files in {out}; "
                     f"summary: {Path(out) / 'summary.json'}; {result.get('seconds', 0):.1f} s in all")
        return lines
    return []


def info_lines(info: dict) -> list[str]:
    """The ``info`` command's answer as text."""
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
        flat = {k: v for k, v in s["directions"].items() if not isinstance(v, dict)}
        lines.append("    directions: " + ", ".join(f"{k} {number(v)}" for k, v in flat.items()))
        for key, entry in s["directions"].items():  # a record (a curve's bend_training): a line
            if isinstance(entry, dict):
                lines.append(f"    {key}: " + ", ".join(f"{k} {number(v)}"
                                                       for k, v in entry.items()))
    config = info.get("config") or {}
    if isinstance(config, dict):
        for section in ("model", "data", "evaluation"):
            if isinstance(config.get(section), dict):
                lines.append(f"  {section}: " + ", ".join(f"{k} {number(v)}"
                                                        for k, v in config[section].items()))
    return lines


def tile_line(s: dict, workers: int) -> str:
    """The tile rule of a dry run's slice: the tile's points and seconds on a worker, the tiles
    per second the driver must take, and the tile of about a second (``grid.tile``)."""
    rows, cols = s["rule_tile"]
    return (f"tiles of {s['points_per_tile']:,} points take a worker {_seconds(s['tile_s'])} "
            f"each, so the driver takes {rate(s['driver_tiles_per_s'])} tiles/s from {workers} "
            f"worker{'s' * (workers != 1)}; the tile rule (about {s['tile_rule_s']:g} s of a "
            f"worker per tile) gives grid.tile [{rows}, {cols}] ({rows * cols:,} points, "
            f"{rate(s['rule_driver_tiles_per_s'])} tiles/s)")


def _seconds(value: float) -> str:
    """A short time to three significant digits (``0.0123 s``, ``1.5 s``)."""
    return f"{value:.3g} s"


def estimate_lines(result: dict) -> list[str]:
    """A dry run's estimate as text."""
    workers = result["workers"]
    lines = [f"dry run: nothing written; {workers} worker{'s' * (workers != 1)} "
             f"({result['workers_from']})"]
    for name, s in result["slices"].items():
        line = (f"  slice '{name}': {s['points']:,} points in {s['tiles']} "
                f"tile{'s' * (s['tiles'] != 1)}, "
                f"{s['gflop_per_point']:.3g} GFLOP per point (forward), "
                f"{rate(s['probe_points_per_s'])} points/s on one worker (probe of "
                f"{s['probe_points']} points), {duration(s['estimated_s'])} for every point")
        if "tile_s" in s:
            line += "; " + tile_line(s, workers)
        if s["refined"]:  # bounds only where grid.refine is set: unrefined slices have none
            low, high = s["refined_estimated_s"]
            line += (f"; refined (grid.refine): {duration_span(low, high)} (at least "
                     f"{s['refined_points_at_least']:,} points)")
        if s.get("fidelity"):
            f = s["fidelity"]
            line += (f"; two fidelities (grid.fidelity): {duration_span(*f['estimated_s'])} "
                     f"({f['full_points']:,} full-data points, at least "
                     f"{f['subset_points_at_least']:,} subset points)")
        if s.get("preparation"):
            p = s["preparation"]
            line += (f"; with {p['what']} first ({p['epochs']} epochs over the training data, "
                     f"unless a saved one is reused) and {p['points']} points beside the grid: "
                     f"{duration(p['estimated_s'])} more")
        lines.append(line)
    low, high = result["as_configured_s"]
    span = duration(high) if low == high else f"{duration_span(low, high)} (refined slices)"
    lines.append(f"estimated sweep as configured: {span}, plus the pool's start-up")
    return lines
