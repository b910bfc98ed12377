"""Rendering, its one home: the Jinja sandbox, `render(plan)` (a pure function from the plan to the rendered folder's
`{relative path: text}`: the engine's configs, the DeepSpeed JSON, launch.sbatch, README.md), what it reads
(`render_inputs`, the render stage's inputs), and a careful write. The checks around it are engines/checks.py's.

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

    from .engines.base import Engine
    from .plan import Plan


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
    """The file of a template name as Jinja loads it: templates/<name>, or under the template_root of the engine
    that the name's first part names."""
    head = name.split("/", 1)[0]
    from .engine_names import NAMES, module_of

    if head not in NAMES and module_of(head) is not None:
        from .engines import get_engine

        return get_engine(head).template_dir().parent / name
    return folder("templates") / name


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


# ---------------------------------------------------------------- the rendered folder, from the plan


def render(plan: Plan) -> dict[str, str]:
    """The rendered folder's files, relative path -> text: the engine's own configs (Engine.config_files), the
    DeepSpeed JSON, launch.sbatch with the slurm launcher, and README.md. Pure: it writes nothing and checks nothing
    (engines.checks does, before and after; render_checked runs the three)."""
    from .engines import get_engine

    return render_folder(plan, get_engine(plan.engine))


def render_folder(plan: Plan, engine: Engine) -> dict[str, str]:
    """render(plan), with the engine already loaded (Engine.render is this)."""
    from .engines.cluster import cluster_files
    from .engines.folder import README
    from .engines.hf import deepspeed_files

    files = engine.config_files(plan)
    files.update(deepspeed_files(plan))
    files.update(cluster_files(plan, engine))
    files[README] = folder_readme(plan, files, engine)
    return files


def render_inputs(plan: Plan) -> list[Path]:
    """What render(plan) reads besides the plan: the engine's templates folder, the DeepSpeed and README templates,
    the Slurm batch script's with the slurm launcher, the data files the engine names (Engine.template_data), and
    every template those import (templates/_shared/kv.j2). The render stage's template inputs."""
    from .engines import get_engine

    engine = get_engine(plan.engine)
    slurm = ("slurm",) if plan.recipe.distributed.launcher == "slurm" else ()
    return template_files(engine.template_dir(), "deepspeed", "folder", *slurm, data=engine.template_data)


def render_checked(plan: Plan, *, deep: bool = False) -> dict[str, str]:
    """The one call the commands make: the plan's checks (recipe, model, chat template), render(plan) once, then
    the checks of the rendered files and the data (`deep`: also the engine's own validator in its venv). Returns
    the files; raises a one-line UserError."""
    from .engines.checks import check_plan, check_rendered

    check_plan(plan)
    files = render(plan)
    check_rendered(plan, files, deep=deep)
    return files


# What the shared files of a rendered folder are, for its README (launch.sbatch: engines/cluster.py's DESCRIPTION);
# each engine describes its own (Engine.descriptions).
DESCRIPTIONS = {"ds_zero2.json": "DeepSpeed ZeRO-2 config", "ds_zero3.json": "DeepSpeed ZeRO-3 config"}
CLUSTER_STEP = ("Or train on a Slurm cluster instead, with this folder on a filesystem every node sees and the engine "
                "on PATH there (each node's output goes to `logs/<job id>/node-<rank>.log`)")


def folder_readme(plan: Plan, files: dict[str, str], engine: Engine) -> str:
    """The folder's README.md: what is here and the exact commands, run from inside the folder."""
    from .chat_formats import instructions
    from .engines.cluster import DESCRIPTION, SCRIPT
    from .engines.folder import README, data_layout, pretrain_layout

    info = engine.readme(plan)
    descriptions = {**DESCRIPTIONS, SCRIPT: DESCRIPTION, **engine.descriptions}
    listing = [(rel, descriptions.get(rel, "")) for rel in sorted(files) if rel != README]
    train, val = data_layout(plan)
    folded = "".join(part for part, on in (
        (", its system prompt opening each first user turn", instructions(plan.recipe)),
        (", each answer opening with the empty think block", engine.answer_prefix(plan))) if on)
    listing += [(rel, f"training data (a copy of {source.name}{folded})") for rel, source in train.items()]
    listing += [(rel, f"validation data for eval loss (a copy of {source.name}{folded})") for rel, source in val.items()]
    listing += [(rel, f"raw text for continued pre-training (a copy of {source.name})")
                for rel, source in pretrain_layout(plan).items()]
    steps = info.steps
    if SCRIPT in files:  # right after the train step
        steps = [steps[0], (CLUSTER_STEP, [f"sbatch {SCRIPT}"]), *steps[1:]]
    return render_template(
        "folder/README.md.j2", recipe=plan.recipe.name, recipe_hash=plan.recipe_hash[:16], engine=engine.label,
        config_file=engine.config_file, model_key=info.model_key, model=plan.model_path, install=info.install,
        steps=steps, notes=list(info.notes), files=listing,
    )


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
