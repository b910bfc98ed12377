"""Reading a recipe file: YAML (refusing alias bombs) plus `key.path=value` overrides, as plain data.

No pydantic here: `domainft validate` refuses a misspelt engine key from this data before the recipe schema is
loaded; `recipe.load_recipe` validates the same data next.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import RecipeError


def read_recipe_data(path: str | Path, overrides: list[str] | None = None) -> tuple[dict[str, Any], Any]:
    """The recipe file as data with `key.path=value` overrides applied, and its YAML node graph (for line numbers);
    not yet validated. Every failure is a one-line RecipeError."""
    path = Path(path)
    if not path.exists():
        raise RecipeError("recipe file not found", where=path)
    if path.is_dir():
        raise RecipeError("is a folder, expected a recipe YAML file", where=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"not UTF-8 text (byte {exc.start})", where=path) from None
    except OSError as exc:
        raise RecipeError(f"cannot read: {exc.strerror}", where=path) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_alias_bombs(node, path)  # before anything expands the aliases
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"YAML syntax error: {problem}", where=where) from None
    if data is None:
        raise RecipeError("recipe is empty", where=path)
    if not isinstance(data, dict):
        raise RecipeError(f"expected a mapping of keys at the top, found {type(data).__name__}", where=path)
    for item in overrides or []:
        apply_override(data, item)
    return data, node


MAX_EXPANDED_NODES = 100_000  # a real recipe has a few hundred; aliases may not multiply it past this


def _refuse_alias_bombs(root: Any, path: Path) -> None:
    """YAML aliases share one node, but everything that walks the data (validation, hashing, JSON) expands them:
    nested aliases ("billion laughs") grow exponentially. Count the expanded size on the node graph, each
    distinct node once, and refuse past MAX_EXPANDED_NODES or a node that contains itself."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise RecipeError("a YAML alias refers to a node that contains it", where=f"{path}:{node.start_mark.line + 1}")
        open_nodes.add(key)
        children = node.value if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)) else []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in children for n in pair]
        total = 1 + sum(size(child) for child in children)
        open_nodes.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise RecipeError(f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb?)",
                              where=f"{path}:{node.start_mark.line + 1}")
        sizes[key] = total
        return total

    if root is not None:
        size(root)


def apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        from .apikeys import looks_like_key

        if looks_like_key(item):
            raise RecipeError("an override looks like a key (not repeated): overrides are key.path=value, and keys "
                              "go in the environment", where="-s")
        raise RecipeError("not key.path=value", where=f"-s {item}")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    parts = key.split(".")
    target = data
    for part in parts[:-1]:
        nxt = target.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise RecipeError(f"'{part}' is not a section", where=f"-s {key}=…")
        target = nxt
    target[parts[-1]] = value
