"""Sources named ``module:function``: finding the function and calling it, with one-line errors
naming the source, for models and data alike."""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
from pathlib import Path

from ..errors import SourceError


def find_factory(source: str, slot: str, search_path: str | None):
    """The function ``source`` (``module:function``) names, imported with ``search_path`` on
    the Python path; errors name the input by ``slot``."""
    module_name, _, func_name = source.partition(":")
    if search_path and search_path not in sys.path:
        sys.path.insert(0, search_path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise SourceError(f"The {{{slot}}} names module '{module_name}', which cannot be "
                          f"imported ({err}). Give 'module:function' for a module on the Python path.",
                          {slot: "'source' parameter"})
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SourceError(f"The {{{slot}}} must name a function of module '{module_name}'. "
                          f"Got {source!r}, and '{func_name}' is not a function there.",
                          {slot: "'source' parameter"})
    return func


_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_factory(source: str) -> bool:
    """Whether ``source`` names a ``module:function`` (and no file or directory of that name)."""
    return bool(_FACTORY.match(source)) and not os.path.exists(source)


def call_factory(func, source: str, slot: str, **kwargs):
    """``func(**kwargs)``; an exception it raises becomes one line naming the source, the error
    and where it was raised."""
    try:
        return func(**kwargs)
    except SourceError:
        raise
    except Exception as err:  # noqa: BLE001 - any error of user code is reported the same way
        frame = traceback.extract_tb(err.__traceback__)[-1]
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise SourceError(f"The {{{slot}}} names '{source}', which raised {type(err).__name__}"
                          f"{': ' + first if first else ''} (at {Path(frame.filename).name}:"
                          f"{frame.lineno}). Fix the function or give another source.",
                          {slot: "'source' parameter"}) from err
