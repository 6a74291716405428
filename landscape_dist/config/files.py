"""Configuration files: YAML read once (a pipe too) and parsed with safe types only, refused in
one line when it gives a key twice, nests deeper than any setting sits, or holds a value that
contains itself (YAML itself would keep the last key silently, or exhaust Python's stack)."""

from __future__ import annotations

from pathlib import Path

import yaml

from .rules import ConfigError

MAX_DEPTH = 32  # no setting sits deeper than a few levels; deeper input is a mistake or an attack


def yaml_problem(err) -> str:
    """Where and what YAML's parser found wrong, in words."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


class _Loader(yaml.SafeLoader):
    """YAML's safe loader (its own class, so that the checks below change no other loader)."""


def parse_yaml(text: str, what: str):
    """The data ``text`` holds as YAML (safe types only); ConfigError in one line when a
    mapping gives a key twice (YAML keeps the last silently) or the nesting is deeper than
    :data:`MAX_DEPTH` (YAML's own parser would exhaust Python's stack). ``what`` names the
    input ('The config file 'c.yaml''); yaml.YAMLError for invalid YAML."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except RecursionError:
        raise ConfigError(f"{what} nests too deeply for a configuration (settings sit at most "
                          f"{MAX_DEPTH} levels deep). Fix it.") from None
    if node is None:
        return None
    _check_node(node, what)
    return _Loader(text).get_single_data()  # parsed again: small, and now known to be sound


def _check_node(root, what: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH`, an alias inside its own anchor (a value
    that contains itself) and keys given twice in one mapping, walking the YAML nodes without
    recursion, each node once however many aliases name it."""
    height: dict[int, int] = {}  # levels below and including a node walked already
    stack = [(root, "", 1, False)]
    while stack:
        node, where, depth, done = stack.pop()
        children = _children(node, where, what)
        if done:
            height[id(node)] = 1 + max((height[id(c)] for c, _ in children), default=0)
            continue
        if id(node) in height:
            depth += height[id(node)] - 1
        elif any(id(node) == id(n) for n, _, _, d in stack if d):
            raise ConfigError(f"{what} holds a value that contains itself (an alias inside its "
                              f"own anchor, at '{where}'). Fix it.")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{what} nests deeper than {MAX_DEPTH} levels (at line "
                              f"{node.start_mark.line + 1}); settings sit a few levels deep. "
                              f"Fix it.")
        if id(node) in height:
            continue
        stack.append((node, where, depth, True))
        stack.extend((child, name, depth + 1, False) for child, name in children)


def _children(node, where: str, what: str) -> list:
    """(node, dotted name) of a YAML node's items; ConfigError for a key given twice."""
    if isinstance(node, yaml.SequenceNode):
        return [(item, f"{where}.{i}" if where else str(i)) for i, item in enumerate(node.value)]
    if not isinstance(node, yaml.MappingNode):
        return []
    seen, out = {}, []
    for key, value in node.value:
        name = f"{where}.{key.value}" if where else str(key.value)
        if isinstance(key, yaml.ScalarNode) and name in seen:
            first, again = seen[name] + 1, key.start_mark.line + 1
            lines = f"lines {first} and {again}" if first != again else f"line {again}"
            raise ConfigError(f"{what} gives the setting '{name}' twice ({lines}); YAML would "
                              f"keep the last silently. Keep one.")
        seen[name] = key.start_mark.line
        out.append((value, name))
    return out


def _read_text(path: Path) -> str:
    """The text of the config file ``path``, read once (a pipe such as ``<(...)``, whose path
    is no regular file, can be read only once); ConfigError in one line when it cannot be."""
    if path.is_dir():
        raise ConfigError(f"The config file '{path}' is a directory, not a file. Give the path of "
                          f"a YAML file, for example configs/parabola.yaml.")
    if not path.exists():
        raise ConfigError(f"The config file '{path}' does not exist. Give the path of a YAML file, "
                          f"for example configs/parabola.yaml.")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"The config file '{path}' is not text (not UTF-8). Give a YAML "
                          f"file.") from None


def read_config_file(path: Path) -> dict:
    """The settings the YAML file ``path`` holds: a mapping. An empty file, a list, invalid
    YAML, a key given twice or nesting deeper than :data:`MAX_DEPTH` is refused in one line."""
    text = _read_text(path)
    what = f"The config file '{path}'"
    try:
        data = parse_yaml(text, what)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} is not valid YAML at {yaml_problem(err)}. Fix the "
                          f"file.") from None
    if data is None:
        raise ConfigError(f"{what} is empty (it holds no settings). Give a mapping of "
                          f"settings, for example 'model: {{source: parabola}}'.")
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must hold a mapping of settings. "
                          f"Got {type(data).__name__} instead.")
    return data
