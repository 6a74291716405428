"""TensorFlow imported without its start-up banners."""

from __future__ import annotations

import os
import re
import sys
import tempfile

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
