"""The output directory: checked before anything is loaded, and never overwritten unasked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import OutputError

OUT = {"out": "output directory", "overwrite": "overwrite=True"}


# Directories made only to hold a command's lock (store.lock), removed again if it writes nothing:
# messages speak of them as of directories not made yet.
MADE_FOR_LOCK: set[Path] = set()


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (and was not made only for a lock)."""
    path = Path(path)
    while (not path.exists() or path.absolute() in MADE_FOR_LOCK) and path != path.parent:
        path = path.parent
    return path


def check_writable(out: Path, create: bool = True) -> None:
    """Refuse an output directory that cannot be created or written (tried for real, with an
    empty directory made and removed at once); create it if ``create``."""
    out = Path(out)
    existing = nearest_existing(out)
    if not existing.is_dir():
        raise OutputError(f"The output directory '{out}' cannot be created: '{existing}' is a file. "
                          f"Give another {{out}}.", OUT)
    if not os.access(existing, os.W_OK):
        raise OutputError(f"The output directory '{out}' is not writable ('{existing}' does not "
                          f"allow it). Give a writable {{out}}.", OUT)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".landscape_dist-", dir=existing))
        if create:
            out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"The output directory '{out}' cannot be created in '{existing}' "
                          f"({err.strerror or type(err).__name__}). Give another {{out}}.", OUT) from None


def refuse_directories(files: dict[str, Path]) -> None:
    """Refuse output files (``{what it is: path}``) that are directories: no ``overwrite``
    replaces a directory, so say so before any work rather than after it."""
    for what, path in files.items():
        if Path(path).is_dir():
            raise OutputError(f"The {what} '{path}' is a directory, not a file. Move it away, or "
                              f"give another {{out}}.", OUT)


def refuse_existing_surface(out: Path, overwrite: bool) -> None:
    """Refuse to replace ``out/surface.h5`` unless ``overwrite``."""
    target = Path(out) / "surface.h5"
    if target.exists() and not overwrite:
        raise OutputError(f"The surface file '{target}' already exists. Pass {{overwrite}} to "
                          f"replace it, or give another {{out}}.", OUT)


def set_aside_draft(out: Path) -> list[Path]:
    """Before the final sweep in ``out``: a finished draft surface (evaluated on a subset of the
    examples) becomes ``surface_draft.h5``, an unfinished draft's journal
    ``surface_draft.h5.journal`` (numbered ``surface_draft_2.h5`` ... when taken). A surface on
    every example is left where it is (and refused as usual). Returns the new paths."""
    from .journal import TileJournal

    out = Path(out)
    moved = []
    surface, journal = out / "surface.h5", out / "surface.h5.journal"
    if surface.is_file():
        from .surface import open_surface  # a damaged surface is named, not taken for a draft

        with open_surface(surface) as f:
            draft = any("subset" in g.attrs for g in f["slices"].values()) if "slices" in f else False
        if draft:
            moved.append(_free(out, "surface_draft", ".h5"))
            os.replace(surface, moved[-1])
    if journal.is_file():
        fingerprint, _, _ = TileJournal.read(journal)
        if fingerprint and (fingerprint.get("evaluation") or {}).get("examples") is not None:
            moved.append(_free(out, "surface_draft", ".h5.journal"))
            os.replace(journal, moved[-1])
    return moved


def _free(out: Path, stem: str, suffix: str) -> Path:
    """``out/<stem><suffix>``, or ``<stem>_2<suffix>`` ... whichever does not exist yet."""
    path, i = out / f"{stem}{suffix}", 1
    while path.exists():
        i += 1
        path = out / f"{stem}_{i}{suffix}"
    return path


def refuse_retraining(out: Path, overwrite: bool) -> None:
    """Refuse to replace the model and path that a surface (or an unfinished sweep) in ``out``
    was made from, unless ``overwrite``."""
    out = Path(out)
    made = [name for name in ("surface.h5", "surface.h5.journal") if (out / name).exists()]
    trained = [name for name in ("model.keras", "trajectory.h5") if (out / name).exists()]
    if made and trained and not overwrite:
        what = "a surface" if made[0] == "surface.h5" else "an unfinished sweep"
        raise OutputError(f"The output directory '{out}' holds {what} ({made[0]}) made from its "
                          f"{' and '.join(trained)}; training again would replace them. Pass "
                          f"{{overwrite}} to train anyway, or give another {{out}}.", OUT)
