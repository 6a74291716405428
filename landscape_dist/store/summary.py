"""``summary.json``: what a command did, as strict JSON (no NaN or infinities)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def json_safe(value):
    """``value`` with NaN and infinities as None (JSON has no such numbers), paths as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def to_json(summary) -> str:
    """A summary as strict JSON."""
    return json.dumps(json_safe(summary), indent=2, allow_nan=False)


def write_summary(path: Path, summary) -> None:
    """Write ``summary`` to ``path`` whole (a temporary file renamed into place)."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(to_json(summary))
    os.replace(tmp, path)


def merge_summary(path: Path, key: str, summary) -> None:
    """Put ``summary`` under ``key`` in the JSON summary at ``path``, keeping the rest of it (an
    unreadable or non-object file is started afresh)."""
    whole = {}
    if path.is_file():
        try:
            whole = json.loads(path.read_text())
        except (ValueError, OSError):
            whole = {}
    whole = whole if isinstance(whole, dict) else {}
    whole[key] = summary
    write_summary(path, whole)
