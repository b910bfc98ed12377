"""Rendering, its one home: `render(plan)`, a pure function from the plan to the rendered folder's
`{relative path: text}` (the engine's configs, the DeepSpeed JSON, launch.sbatch, README.md); what it reads
(`render_inputs`, the render stage's inputs); and `render_checked`, the one call the commands make (check the plan,
render once, check the files). The checks are engines/checks.py's, the Jinja sandbox domainft.templating's, the
write engines/folder.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .chat_formats import instructions
from .engines import get_engine
from .engines.checks import check_plan, check_rendered
from .engines.cluster import DESCRIPTION, SCRIPT, cluster_files
from .engines.folder import README, data_layout, pretrain_layout
from .engines.hf import deepspeed_files
from .templating import render_template, template_files

if TYPE_CHECKING:  # annotations only: `domainft validate` refuses bad engine keys before pydantic loads
    from .engines.base import Engine
    from .plan import Plan


def render(plan: Plan) -> dict[str, str]:
    """The rendered folder's files, relative path -> text: the engine's own configs (Engine.config_files), the
    DeepSpeed JSON, launch.sbatch with the slurm launcher, and README.md. Pure: it writes nothing and checks nothing
    (engines.checks does, before and after; render_checked runs the three)."""
    engine = get_engine(plan.engine)
    files = engine.config_files(plan)
    files.update(deepspeed_files(plan))
    files.update(cluster_files(plan, engine))
    files[README] = folder_readme(plan, files, engine)
    return files


def render_inputs(plan: Plan) -> list[Path]:
    """What render(plan) reads besides the plan: the engine's templates folder, the DeepSpeed and README templates,
    the Slurm batch script's with the slurm launcher, the data files the engine names (Engine.template_data), and
    every template those import (templates/_shared/kv.j2). The render stage's template inputs."""
    engine = get_engine(plan.engine)
    slurm = ("slurm",) if plan.recipe.distributed.launcher == "slurm" else ()
    return template_files(engine.template_dir(), "deepspeed", "folder", *slurm, data=engine.template_data)


def render_checked(plan: Plan, *, deep: bool = False) -> dict[str, str]:
    """The one call the commands make: the plan's checks (recipe, model, chat template), render(plan) once, then
    the checks of the rendered files and the data (`deep`: also the engine's own validator in its venv). Returns
    the files; raises a one-line UserError."""
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
