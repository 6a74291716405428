"""What the command line says: short human summaries of each command's result."""

from __future__ import annotations

from pathlib import Path


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


def estimate_lines(result: dict) -> list[str]:
    """A dry run's estimate as text."""
    workers = result["workers"]
    lines = [f"dry run: nothing written; {workers} worker{'s' * (workers != 1)} "
             f"({result['workers_from']})"]
    for name, s in result["slices"].items():
        lines.append(f"  slice '{name}': {s['points']:,} points in {s['tiles']} tiles, "
                     f"{s['gflop_per_point']:.3g} GFLOP per point (forward), "
                     f"{s['probe_points_per_s']:,.1f} points/s on one worker (probe of "
                     f"{s['probe_points']} points), about {s['estimated_s']:.0f} s for every "
                     f"point; refined (grid.refine{'' if s['refined'] else ', not set'}): "
                     f"{s['refined_estimated_s'][0]:.0f} to {s['refined_estimated_s'][1]:.0f} s "
                     f"(at least {s['refined_points_at_least']:,} points)")
    low, high = result["as_configured_s"]
    span = f"about {high:.0f} s" if low == high else f"{low:.0f} to {high:.0f} s (refined slices)"
    lines.append(f"estimated sweep as configured: {span}, plus the pool's start-up")
    return lines
