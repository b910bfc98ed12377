"""Jinja templates as data, the one sandbox every file domainft writes from a template goes through (engine configs,
DeepSpeed JSON, launch.sbatch, folder READMEs, the Ollama Modelfile, rubrics, recipes), the value filters that make
recipe values safe inside YAML, JSON and comments, and a careful write of a rendered tree. What a rendered folder
holds is domainft.render's.

Recipe values reach Jinja only as data (never as template source) in a sandbox with StrictUndefined,
so a value like "{{ ''.__class__ }}" renders as those characters and a template typo fails loudly.
"""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .engine_names import templates_of
from .errors import UserError
from .fsutil import atomic_write
from .resources import folder

# Characters YAML readers refuse raw (DEL, C1 controls, non-characters) or read as a line break (NEL, LS, PS):
# written as \u escapes, which JSON and YAML double-quoted strings both understand, so values round-trip.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
# In a comment, anything that could end the line (or be refused) is shown as an escape instead.
_COMMENT_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def _escape(pattern: re.Pattern, text: str) -> str:
    return pattern.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def comment_value(value: Any) -> str:
    """Text for a `# ...` comment line: a path with a newline in it cannot start a line of its own."""
    return _escape(_COMMENT_UNSAFE, str(value))


def yaml_value(value: Any) -> str:
    """One YAML scalar or flow collection, safe to drop after `key: `.

    Floats always carry a dot and an exponent sign form YAML 1.1 reads as a float (`1.0e-04`, not `1e-4`).
    """
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float):
        if math.isfinite(value) and value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            mantissa, exponent = f"{value:.6e}".split("e")
            mantissa = mantissa.rstrip("0")
            mantissa = mantissa + "0" if mantissa.endswith(".") else mantissa
            return f"{mantissa}e{int(exponent):+03d}"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    # A JSON string is a valid YAML double-quoted scalar; JSON collections are YAML flow collections.
    return _escape(_YAML_UNSAFE, json.dumps(value, ensure_ascii=False))


def json_value(value: Any, indent: int | None = None) -> str:
    """JSON that is also safe to embed in YAML (Axolotl's dataset entries are JSON inside YAML)."""
    return _escape(_YAML_UNSAFE, json.dumps(value, ensure_ascii=False, indent=indent))


if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment


@cache
def environment() -> ImmutableSandboxedEnvironment:
    # Imported here: `domainft validate` refuses most bad recipes before anything is rendered, without Jinja.
    from jinja2 import ChoiceLoader, FileSystemLoader, FunctionLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        # templates/, then the templates of a registered engine that lives outside this package
        loader=ChoiceLoader([FileSystemLoader(str(folder("templates"))), FunctionLoader(_outside_template)]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["yaml"] = yaml_value
    env.filters["json"] = json_value
    env.filters["comment"] = comment_value
    return env


def template_path(name: str) -> Path:
    """The file of a template name as Jinja loads it: templates/<name>, or under the templates folder of a registered
    engine that lives outside this package when the name's first part names it (engine_names.register)."""
    return (templates_of(name.split("/", 1)[0]) or folder("templates")) / name


def _outside_template(name: str) -> tuple[str, str, Any] | None:
    path = template_path(name)
    if not path.is_file() or path.is_relative_to(folder("templates")):
        return None
    mtime = path.stat().st_mtime
    return path.read_text(encoding="utf-8"), str(path), lambda: path.is_file() and path.stat().st_mtime == mtime


def template_files(*dirs: str | Path, data: tuple[str, ...] = ()) -> list[Path]:
    """The files under each dir (a name under templates/, or a folder), the `data` files (names under templates/),
    and every template they import, include or extend, as Jinja parses them, transitively (e.g. _shared/kv.j2):
    what rendering from those folders reads."""
    from jinja2 import meta

    root = folder("templates")
    todo = [p for d in dirs for p in sorted((root / d).rglob("*")) if p.is_file()] + [root / d for d in data]
    seen: dict[Path, None] = {}
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen[path] = None
        if path.suffix == ".j2":
            refs = meta.find_referenced_templates(environment().parse(path.read_text(encoding="utf-8")))
            todo += [template_path(ref) for ref in refs if ref]
    return list(seen)


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


def header(recipe_name: str, recipe_hash: str, comment: str = "#") -> str:
    return (
        f"{comment} Rendered by domainft from recipe '{recipe_name}' (sha256 {recipe_hash[:16]}).\n"
        f"{comment} Edit the recipe and re-render rather than this file.\n"
    )


def parse_back(path: str, text: str) -> Any:
    """Parse a rendered file the way its engine will: a template typo fails here, not on a GPU."""
    if path.endswith(".json"):
        return json.loads(text)
    if path.endswith((".yaml", ".yml")):
        return yaml.safe_load(text)
    return text


def write_tree(files: dict[str, str], dest: Path) -> list[Path]:
    """Write files under dest, each only when its bytes change, atomically. Returns the paths written."""
    dest = Path(dest)
    root = dest.resolve()
    if dest.exists() and not dest.is_dir():
        raise UserError("output folder is a file", where=dest)
    written = []
    for rel, text in sorted(files.items()):
        target = (root / rel).resolve()
        if root not in target.parents:
            raise UserError(f"rendered path '{rel}' escapes the output folder", where=dest)
        data = text.encode("utf-8")
        if target.exists() and target.read_bytes() == data:
            continue
        atomic_write(target, data)
        written.append(target)
    return written
