"""How a setting is checked and refused: one error shape for every setting (which setting, what
it must be, what it got, the fix), and the small checks the settings' dataclasses share."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

MAX_LEVELS = 1000  # contour levels: more cannot be told apart, and each costs a pass over the grid


class ConfigError(ValueError):
    """A setting has a value the tool cannot use."""


class SettingError(ConfigError):
    """One setting's value is wrong: which setting, what it must be, what it got, the fix.

    ``requirement`` and ``fix`` may refer to sibling settings as ``{at}name``; ``{at}`` becomes the
    prefix that :meth:`under` adds (``grid.``), or nothing for an object built directly.
    """

    def __init__(self, setting: str, requirement: str, got: Any, fix: str = "", at: str = ""):
        self.setting, self.requirement, self.got, self.fix, self.at = setting, requirement, got, fix, at
        text = f"The '{setting}' setting must be {requirement}. Got {got!r} instead. {fix}".strip()
        super().__init__(text.replace("{at}", at))

    def under(self, prefix: str) -> "SettingError":
        """The same error for a setting that sits under ``prefix`` (e.g. 'grid.x')."""
        if not prefix:
            return self
        return SettingError(f"{prefix}.{self.setting}", self.requirement, self.got, self.fix,
                            f"{prefix}.{self.at}")


def must(name: str, requirement: str, got: Any, fix: str = "") -> SettingError:
    return SettingError(name, requirement, got, fix)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_integers(obj, lows) -> None:
    """Each field ``key`` of ``lows`` (``(key, low)`` pairs) of a settings dataclass must be an
    integer >= ``low``."""
    for key, low in lows:
        value = getattr(obj, key)
        if not is_int(value) or value < low:
            raise must(key, f"an integer >= {low}", value)


def check_finite(obj) -> None:
    """Every float field of a settings dataclass must be a finite number (NaN and infinities are
    bad input in any numeric setting)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise must(f.name, "a finite number", value)


def is_seed_field(name: str) -> bool:
    """Whether a settings field holds a seed (``seed``, ``<what>_seed``) or seeds (``seeds``)."""
    return name in ("seed", "seeds") or name.endswith(("_seed", "_seeds"))


def check_seeds(obj) -> None:
    """Every seed field of a settings dataclass (see :func:`is_seed_field`) must hold integers
    >= 0: a random generator takes no negative seed, and a later reader could not tell it from
    a mistake."""
    for f in dataclasses.fields(obj):
        if not is_seed_field(f.name):
            continue
        value = getattr(obj, f.name)
        values = value if isinstance(value, (list, tuple)) else (value,)
        if any(is_int(v) and v < 0 for v in values):
            what = "a list of integers >= 0" if isinstance(value, (list, tuple)) else "an integer >= 0"
            raise must(f.name, what, list(value) if isinstance(value, tuple) else value,
                       "Give a seed of 0 or more.")
