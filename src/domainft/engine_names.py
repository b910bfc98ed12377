"""The engine registry: the single list of the engines domainft can drive, and the module that holds each.

A leaf: it imports nothing from domainft, so the recipe schema (which lists the engines a recipe may name), the CLI's
help and `doctor` read it without loading any engine. Adding an engine is one folder (its module with the `ENGINE`
class, `lock.txt` and `known.json` beside it, and its templates in `templates/<name>/`) plus one line below.
`domainft.engines.get_engine` imports an engine's module when it is first asked for.
"""

from __future__ import annotations

from pathlib import Path

# engine name -> the module whose ENGINE is its class (the built-in engines, in the order the CLI lists them)
MODULES: dict[str, str] = {
    "llamafactory": "domainft.engines.llamafactory",
    "axolotl": "domainft.engines.axolotl",
    "swift": "domainft.engines.swift",
}

# The built-in engines: the names a recipe's `engine` key accepts.
NAMES: tuple[str, ...] = tuple(MODULES)


# engine name -> the folder holding its `<name>/` templates, for an engine that lives outside this package
TEMPLATES: dict[str, Path] = {}


def register(name: str, module: str, templates: Path | None = None) -> None:
    """Make one more engine loadable by name (a plugin, or a test's throwaway engine): `module` holds its ENGINE
    class, `templates` the folder with its `<name>/` templates (None: domainft's templates/). The recipe schema keeps
    to NAMES; a plan names such an engine with make_plan(..., engine=name)."""
    MODULES[name] = module
    if templates is not None:
        TEMPLATES[name] = Path(templates)


def unregister(name: str) -> None:
    if name not in NAMES:
        MODULES.pop(name, None)
        TEMPLATES.pop(name, None)


def templates_of(name: str) -> Path | None:
    """The folder holding the `<name>/` templates of a registered outside engine; None for domainft's own."""
    return TEMPLATES.get(name)


def module_of(name: str) -> str | None:
    """The module holding the engine `name`, or None when no engine has that name."""
    return MODULES.get(name)
