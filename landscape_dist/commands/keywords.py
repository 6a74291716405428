"""How the keywords of :func:`~landscape_dist.commands.landscape.landscape` become a
configuration: each top-level section a keyword taking its dict, shorthands for what a notebook
says most, merged over a base and checked by the YAML's rules, a bad value named by its keyword."""

from __future__ import annotations

import re

from ..config.loading import config_from_dict
from ..config.rules import ConfigError, SettingError
from ..config.schema import Config

# the top-level sections of a configuration, each a keyword taking its dict
SECTIONS = ("model", "data", "train", "grid", "slices", "cluster", "evaluation", "plot",
            "curvature", "sharpness")
# shorthand keyword -> the setting it stands for (where one keyword is one setting)
SHORTHANDS = {"workers": "cluster.num_workers", "formats": "plot.formats"}
_UNKNOWN = re.compile(r"^Unknown setting '([^']+)'\. (.*)$")


def settings_from_keywords(base: dict | None = None, *, slices=None, grid=None, directions=None,
                           quantities=None, workers=None, in_process=None, formats=None,
                           **sections) -> dict:
    """The plain settings (as a YAML file holds them) that the keywords say, over ``base``:
    each section keyword replaces the keys it gives; ``grid``, ``directions`` and
    ``quantities`` reach every slice. No check is made here (see :func:`configure`)."""
    data = _merged({}, base or {})
    for name, value in sections.items():
        data[name] = _merged(data.get(name), value)
    if grid is not None:
        data["grid"] = _merged(data.get("grid"), grid)
    if slices is not None:
        data["slices"] = ([_slice(s) for s in slices] if isinstance(slices, (list, tuple))
                          else slices)
    if grid is not None and base and isinstance(data.get("slices"), list) and slices is None:
        # a configuration's slices carry the whole grid: the keyword reaches them too
        data["slices"] = [_merged(s, {"grid": grid}) if isinstance(s, dict) else s
                          for s in data["slices"]]
    if directions is not None or quantities is not None:
        every = data.get("slices") if data.get("slices") is not None else [{"name": "random"}]
        if isinstance(every, list):
            data["slices"] = [_for_slice(s, directions, quantities) for s in every]
    cluster = data.get("cluster") if isinstance(data.get("cluster"), dict) else {}
    if workers is not None:
        data["cluster"] = {**cluster, "num_workers": workers, "backend": "ray"}
    elif in_process:
        data["cluster"] = {**cluster, "backend": "local"}
    elif in_process is None and not base and "cluster" not in sections:
        data["cluster"] = {**cluster, "backend": "local"}  # a notebook's default: no Ray
    if formats is not None:
        plot = data.get("plot") if isinstance(data.get("plot"), dict) else {}
        data["plot"] = {**plot, "formats": list(formats) if isinstance(formats, (list, tuple))
                        else formats}
    return data


def _merged(old, new):
    """``new`` over ``old``, dicts merged key by key (a copy); anything else replaced."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for key, value in new.items():
            out[key] = _merged(old.get(key), value)
        return out
    if isinstance(new, dict):
        return {k: _merged(None, v) for k, v in new.items()}
    return list(new) if isinstance(new, (list, tuple)) else new


def _slice(item):
    """A slice from the ``slices`` keyword: a plane kind's name stands for the slice of that
    name and kind; a dict is a slice as in YAML."""
    return {"name": item, "directions": {"kind": item}} if isinstance(item, str) else item


def _for_slice(item, directions, quantities):
    if not isinstance(item, dict):
        return item
    item = dict(item)
    if directions is not None:
        own = item.get("directions") if isinstance(item.get("directions"), dict) else {}
        item["directions"] = (_merged(directions, own) if isinstance(directions, dict)
                              else directions)
    if quantities is not None:
        item["quantities"] = list(quantities) if isinstance(quantities, (list, tuple)) else quantities
    return item


def configure(base: dict | None = None, **keywords) -> Config:
    """The :class:`Config` the keywords say over ``base`` (see :func:`settings_from_keywords`),
    checked by the YAML's rules; a bad value is refused in one line named by its keyword."""
    try:
        return config_from_dict(settings_from_keywords(base, **keywords))
    except SettingError as err:
        raise ConfigError(_keyword_words(err, keywords)) from None
    except ConfigError as err:
        found = _UNKNOWN.match(str(err))
        if not found:
            raise
        keyword, rest = _keyword_of(found.group(1), keywords)
        where = f"'{rest}' in the '{keyword}' keyword" if rest else f"keyword '{keyword}'"
        raise ConfigError(f"Unknown setting {where}. {found.group(2)}") from None


def _keyword_of(setting: str, keywords: dict) -> tuple[str, str]:
    """The keyword a dotted setting came from, and the setting's name inside it."""
    for short, full in SHORTHANDS.items():
        if keywords.get(short) is not None and (setting == full or setting.startswith(full + ".")):
            return short, setting[len(full) + 1:]
    parts = setting.split(".")
    if parts[0] == "slices" and len(parts) > 2 and not _given_slices(keywords):
        inner = parts[2:]
        if inner[0] == "directions" and keywords.get("directions") is not None:
            return "directions", ".".join(inner[1:])
        if inner[0] == "quantities" and keywords.get("quantities") is not None:
            return "quantities", ".".join(inner[1:])
    if parts[0] == "slices" and len(parts) > 2 and parts[2] == "grid" and keywords.get("grid"):
        if not _given_slices(keywords):
            return "grid", ".".join(parts[3:])
    return parts[0], ".".join(parts[1:])


def _given_slices(keywords: dict) -> bool:
    return keywords.get("slices") is not None


def _keyword_words(err: SettingError, keywords: dict) -> str:
    """``err`` named by the keyword its setting came from: "The 'grid' keyword's 'x.points'
    setting must be ..." (or "The 'workers' keyword must be ..." for a whole keyword)."""
    keyword, rest = _keyword_of(err.setting, keywords)
    item, _, inner = rest.partition(".")
    if item.isdigit():  # a list keyword's item: slices=[...], formats=[...]
        name = (f"The '{keyword}' keyword's '{inner}' setting of item {item}" if inner
                else f"The '{keyword}' keyword's item {item}")
    else:
        name = f"The '{keyword}' keyword's '{rest}' setting" if rest else f"The '{keyword}' keyword"
    text = f"{name} must be {err.requirement}. Got {err.got!r} instead. {err.fix}".strip()
    return text.replace("{at}", err.at)
