"""Regenerate the recipe reference (docs/recipe-reference.md and the README section) from the schema.

    python scripts/gen_recipe_reference.py          # write
    python scripts/gen_recipe_reference.py --check  # exit 1 when out of date (the tests run this)
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from domainft.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- recipe-reference:begin -->", "<!-- recipe-reference:end -->"


def _type_name(annotation) -> str:
    """`float | None`, `list[str] | 'all'`, `'lora' | 'qlora' | 'full'`: what a person writes in YAML."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation)).replace("Any", "any")


def _section_model(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_model(arg)
        if found is not None:
            return found
    return None


def rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    lines: list[str] = []
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        section = _section_model(field.annotation)
        if section is not None:
            nested.append((key, section))
            continue
        default = "required" if field.is_required() else repr(
            field.default_factory() if field.default_factory else field.default)
        doc = (field.description or "").replace("|", "\\|")
        cells = [f"`{key}`", f"`{_type_name(field.annotation)}`", f"`{default}`", doc]
        lines.append("| " + " | ".join(c.replace("|", "\\|") if c is not doc else c for c in cells) + " |")
    for key, section in nested:
        lines += rows(section, f"{key}.")
    return lines


def reference() -> str:
    head = ["| key | type | default | meaning |", "|---|---|---|---|"]
    return "\n".join(head + rows(Recipe)) + "\n"


def main() -> int:
    text = reference()
    doc = ROOT / "docs" / "recipe-reference.md"
    doc_text = "# Recipe reference\n\nGenerated from `src/domainft/recipe.py` by `scripts/gen_recipe_reference.py`.\n\n" + text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    new_readme = readme[:start] + "\n" + text + readme[end:]
    if "--check" in sys.argv:
        stale = (not doc.exists() or doc.read_text(encoding="utf-8") != doc_text) or new_readme != readme
        if stale:
            print("recipe reference is out of date: run python scripts/gen_recipe_reference.py")
            return 1
        return 0
    doc.write_text(doc_text, encoding="utf-8")
    (ROOT / "README.md").write_text(new_readme, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
