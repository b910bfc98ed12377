"""What can be checked before the first long stage, beyond the engine's static checks (engines/checks.py): the
documents exist, the domain has prompts and something to be evaluated on, and what could not be checked here is
said. `domainft validate` runs these; `domainft run` runs them (and the static checks) before any stage starts,
so a mistake surfaces in a second, not after datagen, training and export.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DataError, RecipeError

if TYPE_CHECKING:
    from .plan import Plan


def check(plan: Plan, *, for_run: bool = False, evaluate: bool = True) -> None:
    """One-line UserError on the first problem. `for_run`: `domainft run` is about to start; `evaluate`: its eval
    stage is not excluded."""
    check_documents(plan)
    if plan.recipe.datagen is not None:
        from .prompt_files import prompt_paths

        prompt_paths(plan.recipe)  # the domain's prompts, or a one-line error naming what to set
    if evaluate:
        check_eval_tasks(plan, for_run=for_run)


def check_documents(plan: Plan) -> None:
    for given, path in zip(plan.recipe.extract.inputs, plan.document_inputs):
        if not path.exists():
            raise DataError(f"document file or folder not found: {given}", where=f"extract.inputs ({path})")


def nothing_to_evaluate(plan: Plan) -> str | None:
    """Why the eval stage would have no task, or None. Cheap: the task folders' YAML, no lm-eval."""
    from .evaluate.tasks import domain_groups

    recipe = plan.recipe
    if recipe.eval.tasks or recipe.domain in domain_groups():
        return None
    if recipe.datagen is None:
        return f"domain '{recipe.domain}' has no eval tasks and the recipe has no documents to make them from"
    if not recipe.datagen.split.test and recipe.datagen.probe_per_chunk == 0:
        return "datagen.split.test and datagen.probe_per_chunk are 0: no held-out passages, no knowledge probe"
    return None


def check_eval_tasks(plan: Plan, *, for_run: bool) -> None:
    """Every task in eval.tasks exists, and there is something to evaluate. A recipe of dataset files only, in the
    default domain, is valid for training alone (`validate` notes it); `run` refuses it before training."""
    from .evaluate.tasks import resolve_tasks

    why = nothing_to_evaluate(plan)
    if why and plan.recipe.datagen is None:
        if plan.recipe.domain == "general" and not for_run:
            return  # valid for training alone: said by notes()
        from .evaluate.tasks import domain_groups

        raise RecipeError(
            f"no eval tasks for domain '{plan.recipe.domain}'", where="eval.tasks",
            hint="list your own question/answer JSONL in eval.tasks (relative to the recipe), set extract.inputs "
                 "(the run's held-out passages and knowledge probe become tasks), use a domain that has tasks ("
                 f"{', '.join(sorted(set(domain_groups().values())))})" + (", or run with --skip eval" if for_run else ""))
    if why:
        raise RecipeError(f"nothing to evaluate: {why}", where="eval.tasks",
                          hint="set datagen.split.test above 0, or list your own question/answer JSONL in eval.tasks")
    resolve_tasks(plan)  # unknown task names, missing task files


def notes(plan: Plan) -> list[str]:
    """What could not be checked here, or will stop `run`, in words: printed as notes, never silently skipped."""
    found = []
    if plan.is_hub:
        from .models.pull import missing_reason

        if why := missing_reason(plan):
            source = plan.recipe.source or plan.recipe.model.base
            if isinstance(source, Path) and source.is_relative_to(Path.cwd()):
                source = source.relative_to(Path.cwd())  # as the user typed it, from here
            found.append(f"model {plan.recipe.model.base} ({plan.recipe.model.hub}) is {why} for this run: its "
                         f"tokenizer and chat template are checked once it is (domainft models pull {source})")
    if why := nothing_to_evaluate(plan):
        found.append(f"nothing to evaluate: {why}; `domainft run` needs eval.tasks (e.g. your own question/answer "
                     "JSONL, relative to the recipe) or --skip eval")
    return found
