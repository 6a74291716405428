"""TensorFlow imported without its start-up banners; Keras on the TensorFlow backend; what this
process evaluates on."""

from __future__ import annotations

import os
import re
import sys
import tempfile

from ..errors import LandscapeError

# Lines TensorFlow's C++ runtime prints while it loads, before any logging setting applies.
_BANNERS = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
    r"Could not find cuda drivers|cpu_feature_guard|This TensorFlow binary is optimized|"
    r"To enable the following instructions|rebuild TensorFlow with the appropriate compiler|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning|failed call to cuInit")


def check_keras_backend() -> None:
    """Refuse, in one line, a session that imported Keras on another backend than TensorFlow
    before this package could choose it (``landscape_dist/__init__.py`` sets KERAS_BACKEND)."""
    keras = sys.modules.get("keras")
    config = getattr(keras, "config", None)
    backend = config.backend() if config is not None and hasattr(config, "backend") else None
    if backend not in (None, "tensorflow"):
        raise LandscapeError(f"Keras was imported in this Python session with the {backend!r} "
                             f"backend, but landscape_dist runs on TensorFlow. Start a new "
                             f"session and import landscape_dist before Keras (or set "
                             f"KERAS_BACKEND=tensorflow).")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up banners removed from stderr (anything else written to
    stderr meanwhile is passed on afterwards). The C++ runtime writes them to file descriptor 2
    directly, so they are captured there. (Importing it in a thread beside Ray's start-up was
    tried: other imports of TensorFlow's modules from the main thread meanwhile can meet the
    import lock's deadlock detection.)"""
    check_keras_backend()
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


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what the platform reports."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_kind() -> str:
    """What this process evaluates on, in words: the first visible GPU's name (and how many are
    visible), else the CPU's model name. Part of the key of a stored strategy choice: timings
    on one kind of device say little about another."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        try:
            name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        except (ValueError, RuntimeError):
            name = "GPU"
        return f"{len(gpus)} x {name}"
    return cpu_model()
