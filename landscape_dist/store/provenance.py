"""What a stored result was made with: the versions of the packages it depends on."""

from __future__ import annotations

import platform


def package_versions() -> dict:
    """Versions of the packages a surface depends on (None for one not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("landscape-dist", "numpy", "tensorflow", "keras", "ray", "scikit-learn", "h5py"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
