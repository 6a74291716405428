"""Strategy choices kept on disk per model and machine, so that the next run starts at full speed.

A choice is stored under a key describing what its timings depend on: the model's architecture
and weight shapes, the data's shapes and dtypes, the evaluator's settings and plane, the device
kind (GPU name or CPU model), the threads TensorFlow's ops may use and the versions of
TensorFlow, Keras and this package. One JSON file per key, named by its digest, written
atomically; a file that cannot be read back is ignored (one log line) and replaced by the next
choice. Every strategy gives the same values, so a stored choice changes speed, never a value.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

from .strategy import Strategy

log = logging.getLogger(__name__)

FORMAT = 1
ENV = "LANDSCAPE_DIST_TUNING_CACHE"  # the default place, where set (tests point it elsewhere)
OFF = ("none", "off", "")


def cache_dir(setting: str | os.PathLike | None) -> Path | None:
    """The directory a choice is kept in: None for no cache (``None``, ``'none'``); for
    ``'default'``, ``$LANDSCAPE_DIST_TUNING_CACHE`` where set, else ``landscape_dist/tuning``
    under ``$XDG_CACHE_HOME`` (``~/.cache`` where unset); else the path given."""
    if setting is None or str(setting).strip().lower() in OFF:
        return None
    if str(setting) != "default":
        return Path(setting).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "landscape_dist" / "tuning"


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # reprs of functions and objects differ per process


def _plain(value):
    """``value`` as JSON can hold it, object addresses removed (they differ between runs)."""
    return json.loads(_ADDRESS.sub("", json.dumps(value, sort_keys=True, default=repr)))


def model_description(model) -> list:
    """The model's architecture as the key holds it: per layer its class, settings (without its
    name, which differs between two builds of one model in a process) and weight shapes and
    dtypes; then every trainable variable's shape in order."""
    layers = []
    for layer in model.layers:
        try:
            config = {k: v for k, v in layer.get_config().items() if k != "name"}
        except (NotImplementedError, TypeError, ValueError, AttributeError):
            config = {}
        layers.append([type(layer).__name__, _plain(config),
                       [[list(w.shape), str(w.dtype)] for w in layer.weights]])
    return [type(model).__name__, layers, [list(v.shape) for v in model.trainable_variables]]


def key_digest(description: dict) -> str:
    """The file name's digest of a key's description (sha256, 32 hex digits)."""
    text = json.dumps(description, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _choice(entry: dict) -> dict:
    """A stored choice's strategy, points per call and report, each of the type it was written
    with (an edited file's ``"xla": "no"`` would otherwise read as true); ValueError or TypeError
    where one is not."""
    if not isinstance(entry["strategy"], dict):
        raise ValueError("the strategy is not a mapping")
    fields = dict(entry["strategy"])
    for name in ("shortcut", "fold", "xla", "fallback"):
        if not isinstance(fields.get(name, False), bool):
            raise ValueError(f"strategy {name} {fields[name]!r} is not true or false")
    points, report = entry["points_per_call"], entry.get("report", {})
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        raise ValueError(f"points per call {points!r} is not an integer >= 1")
    skipped = report.get("skipped") if isinstance(report, dict) else None
    if not isinstance(report, dict) or not (skipped is None or isinstance(skipped, list) and all(
            isinstance(label, str) for label in skipped)):
        raise ValueError("the report is not a mapping with a list of skipped labels")
    return {"strategy": Strategy(**fields), "points_per_call": points, "report": dict(report)}


class TuningCache:
    """Choices under ``directory``: :meth:`read` a key's entry (None where there is none or it
    is damaged), :meth:`write` one atomically. An entry holds the strategy, the points per call
    and the timings it was chosen by."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._warned = False

    def _warn(self, message: str, *args) -> None:
        """One warning per cache: a directory that cannot be read cannot be written either, and
        its problem is said once; later ones go to the debug log."""
        (log.debug if self._warned else log.warning)(message, *args)
        self._warned = True

    def path(self, description: dict) -> Path:
        return self.directory / f"{key_digest(description)}.json"

    def read(self, description: dict) -> dict | None:
        """The entry stored under ``description``: ``strategy`` (a :class:`Strategy`),
        ``points_per_call`` and ``report`` (the timings), or where no choice was made only
        ``vectorize_failure`` (why strict vectorisation failed); None where there is none. A
        damaged entry (unreadable, not this format, another key) is ignored with one log line."""
        path = self.path(description)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            self._warn("tuning cache %s could not be read (%s); timing the strategies again",
                       path, err)
            return None
        try:  # bytes that are not UTF-8 are a damaged entry too (UnicodeDecodeError: ValueError)
            entry = json.loads(raw.decode("utf-8"))
            if entry.get("format") != FORMAT or entry.get("key") != _plain(description):
                raise ValueError("another format or key")
            if entry["strategy"] is None:
                return {"vectorize_failure": str(entry["vectorize_failure"])}
            return _choice(entry)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            self._warn("tuning cache %s is damaged (%s); ignored, timing the strategies again",
                       path, str(err).splitlines()[0][:120] if str(err) else type(err).__name__)
            return None

    def write(self, description: dict, strategy: Strategy, points_per_call: int,
              report: dict) -> Path | None:
        """Store a choice under ``description`` atomically (a temporary file renamed over the
        entry); its path, or None where the directory cannot be written (one log line)."""
        entry = {"format": FORMAT, "key": _plain(description),
                 "strategy": {"method": strategy.method, "shortcut": strategy.shortcut,
                              "fold": strategy.fold, "xla": strategy.xla,
                              "parallel": strategy.parallel, "fallback": strategy.fallback},
                 "points_per_call": int(points_per_call), "report": _plain(report)}
        return self._write(description, entry)

    def _write(self, description: dict, entry: dict) -> Path | None:
        path = self.path(description)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(entry, out, indent=1, sort_keys=True)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as err:
            self._warn("tuning cache %s could not be written (%s)", path, err)
            return None
        return path

    def write_failure(self, description: dict, reason: str) -> Path | None:
        """Store, where no choice is stored, that strict vectorisation fails (``reason``): the
        next run starts with the compiled loop instead of trying it again."""
        if self.read(description) is not None:
            return None
        return self._write(description, {"format": FORMAT, "key": _plain(description),
                                          "strategy": None, "vectorize_failure": reason})
