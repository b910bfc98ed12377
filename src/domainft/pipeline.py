"""`domainft run`: the stages in order, each skipped when what it reads is unchanged.

Each stage declares the recipe values it reads (params), the files it reads (inputs) and the files it
writes (outputs). The manifest records their hashes; a stage reruns when any of them changed, and the
stages after it rerun because their inputs (its outputs) changed in turn.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .errors import UserError
from .manifest import FileRecord, Manifest, files_under, package_versions, sha256_json
from .plan import Plan
from .resources import folder

console = Console(stderr=True)


@dataclass(frozen=True)
class Stage:
    name: str
    doc: str
    enabled: Callable[[Plan], bool]
    params: Callable[[Plan], dict[str, Any]]
    inputs: Callable[[Plan], list[Path]]
    outputs: Callable[[Plan], list[Path]]
    run: Callable[[Plan], Any]
    #: Why the last run, though it finished, left work to do (None: nothing left); such a stage is never up to date.
    unfinished: Callable[[Plan], str | None] = lambda p: None
    #: The line that ends the stage: what it made and where (`value`: what its run returned).
    said: Callable[[Plan, Any], str] = lambda p, value: ""


# ---------------------------------------------------------------- stage bodies (lazy imports keep the CLI fast)


def _run_model(plan: Plan) -> Any:
    from .models.pull import pull_for_plan

    pulled = pull_for_plan(plan)
    if pulled.note:
        console.print(f"[yellow]note:[/yellow] {pulled.note}", markup=True, highlight=False)
    return pulled


def _run(stage: str, plan: Plan, *args: Any) -> Any:
    """Run one stage's body, importing its module only then: the CLI stays fast."""
    if stage == "model-missing":
        from .models.pull import missing_reason as body
    elif stage == "extract":
        from .extract import extract_for_plan as body
    elif stage == "datagen":
        from .datagen import run_datagen as body
    elif stage == "pretrain":
        from .train import pretrain as body
    elif stage == "train":
        from .train import train as body
    elif stage == "export":
        from .export import run_export as body
    else:
        raise ValueError(f"no stage body '{stage}'")
    return body(plan, *args)


_model_missing = partial(_run, "model-missing")
_run_extract = partial(_run, "extract")
_run_datagen = partial(_run, "datagen")
_run_pretrain = partial(_run, "pretrain")
_run_train = partial(_run, "train")
_run_export = partial(_run, "export")


def _run_render(plan: Plan) -> Any:
    return render_for_plan(plan)


def _run_eval(plan: Plan) -> Any:
    from .evaluate import run_eval

    return run_eval(plan, limit=plan.recipe.eval.limit, backend=plan.recipe.eval.backend)


def render_for_plan(plan: Plan, rendered: dict[str, str] | None = None) -> list[Path]:
    """Render the folder once and check it (render.render_checked), write the files whose bytes changed, copy the
    data in. `rendered`: the files this command already rendered and checked for this plan (`domainft render`
    before datagen): written as they are, with only the data checked again (datagen may have made it since)."""
    return _write_rendered(plan, rendered)[1]


def _write_rendered(plan: Plan, rendered: dict[str, str] | None) -> tuple[dict[str, str], list[Path]]:
    from .engines.folder import folder_files, write_folder

    if rendered is None:
        from .render import render_checked

        files = render_checked(plan)
    else:
        from .engines.checks import check_dataset

        check_dataset(plan)
        files = rendered
    write_folder(plan, files, plan.render_dir)
    return files, folder_files(plan, files, plan.render_dir)


def _rendering_once(plan: Plan, stages: tuple[Stage, ...], rendered: dict[str, str] | None) -> tuple[Stage, ...]:
    """The stages of one run with the folder rendered once: the render stage writes `rendered` when the command
    already rendered it (unless the model stage has since pinned the model to a new path, which the files name),
    and pre-training and training launch from the files the render stage made in this run, or from `rendered` when
    the render stage was skipped as done (its folder holds those bytes); each renders for itself only when neither
    is there."""
    made: dict[str, dict[str, str]] = {}
    model_path = plan.model_path  # what `rendered` names: the run has not pulled anything yet

    def current(plan: Plan) -> dict[str, str] | None:
        return rendered if plan.model_path == model_path else None

    def render(plan: Plan) -> list[Path]:
        made["files"], paths = _write_rendered(plan, current(plan))
        return paths

    def launch_files(plan: Plan) -> dict[str, str] | None:
        if "files" not in made and current(plan) is not None:
            from .engines.checks import check_dataset

            check_dataset(plan)  # as the render stage would have: the data may be newer than the preflight
            made["files"] = current(plan)
        return made.get("files")

    runs = {_run_render: render, _run_pretrain: lambda plan: _run_pretrain(plan, launch_files(plan)),
            _run_train: lambda plan: _run_train(plan, launch_files(plan))}
    return tuple(replace(s, run=runs[s.run]) if s.run in runs else s for s in stages)


# ---------------------------------------------------------------- what each stage reads and writes


def _datagen_prompt_file(plan: Plan) -> list[Path]:
    """The prompt file, or each file of a language family (general_zh, general_en)."""
    if not plan.recipe.datagen:
        return []
    from .prompt_files import prompt_paths

    return list(prompt_paths(plan.recipe).values())


def _curate_rubric_file(plan: Plan) -> list[Path]:
    """The curation judge's rubric: an edit re-rates the pairs (unchanged verdicts come from its cache)."""
    curate = plan.recipe.datagen.curate if plan.recipe.datagen else None
    if curate is None:
        return []
    from .judge.rubric import rubric_path

    return [rubric_path(curate.rubric, home="datagen", base_dir=plan.recipe.base_dir)]


def _render_templates(plan: Plan) -> list[Path]:
    """What rendering reads from templates/ (render.render_inputs): the engine's templates and data files, every
    template they import (templates/_shared/kv.j2), the shared alpaca formats; the Slurm batch script's with the
    slurm launcher."""
    from .render import render_inputs

    return render_inputs(plan)


def _review_journal(plan: Plan) -> list[Path]:
    """People's decisions on the pairs: a new one reruns the split, and so render and train."""
    return [plan.review_journal] if plan.review_journal.exists() else []


def _top_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() else []


def _recipe_part(plan: Plan, *keys: str) -> dict[str, Any]:
    data = plan.recipe.model_dump(mode="json")
    return {k: data[k] for k in keys}


def datagen_unfinished(plan: Plan) -> str | None:
    """Chunks that failed last time (the teacher gave up on them): a rerun asks again for exactly those."""
    import json

    try:
        summary = json.loads((plan.datagen_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if summary.get("failed"):
        return f"{summary['failed']} chunk(s) failed last time"
    if (summary.get("curate") or {}).get("unrated"):  # the judge could not rate them: ask it again
        return f"{summary['curate']['unrated']} pair(s) unrated by the curation judge last time"
    return None


def _train_outputs(plan: Plan) -> list[Path]:
    return _weights(plan.train_dir)


def _weights(folder_path: Path) -> list[Path]:
    # .jinja: the chat template deployed beside the adapter (chat and eval prompt with it)
    return [p for p in _top_files(folder_path) if p.suffix in {".safetensors", ".json", ".bin", ".model", ".jinja"}
            and not p.name.startswith(("trainer_state", "all_results", "train_results", "eval_results"))]


def _pretrain_outputs(plan: Plan) -> list[Path]:
    """Continued pre-training's adapter (or weights): SFT starts from them (none without method.pretrain)."""
    return _weights(plan.pretrain_dir) if plan.recipe.method.pretrain is not None else []


def _pretrain_inputs(plan: Plan) -> list[Path]:
    """The rendered pre-training config and its raw text: SFT settings changing do not rerun it."""
    return [p for p in [*_top_files(plan.render_dir), *_top_files(plan.render_dir / "data")] if "pretrain" in p.name]


def _eval_task_files(plan: Plan) -> list[Path]:
    """The tasks' YAML, data and utils.py, the recipe's own task and item files, and the judge's rubric: an edit
    rescores (unchanged runs are reused)."""
    files = [p for p in files_under([folder("eval_tasks")]) if "__pycache__" not in p.parts]
    files += [path.resolve() for t in plan.recipe.eval.tasks if t.endswith((".yaml", ".jsonl"))
              and (path := plan.recipe.resolve(t)).is_file()]
    if plan.recipe.eval.judge is not None:
        from .judge.rubric import rubric_path

        files.append(rubric_path(plan.recipe.eval.judge.rubric, home="eval_tasks", base_dir=plan.recipe.base_dir).resolve())
    return list(dict.fromkeys(files))


def _knowledge_probe(plan: Plan) -> list[Path]:
    """datagen's knowledge probe, a task of its own in eval (absent in runs made before it existed), and with
    eval.retrieval the chunks it searches."""
    probe = plan.knowledge_file
    chunks = plan.extract_dir / "chunks.jsonl"
    return ([probe] if probe is not None and probe.exists() else []) + (
        [chunks] if plan.recipe.eval.retrieval and chunks.exists() else [])


def _eval_ggufs(plan: Plan) -> list[Path]:
    if not plan.recipe.eval.gguf:
        return []
    from .evaluate.run import exported_ggufs

    return [path for _, path in exported_ggufs(plan)]


def shown(path: Path) -> str:
    """A path as a person would type it here: relative to the current folder when under it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def _said_extract(plan: Plan, result: Any) -> str:
    skipped = f", {len(result.skipped)} skipped" if result is not None and result.skipped else ""
    counts = f"{len(result.chunks)} chunks from {len(result.files)} files{skipped}: " if result is not None else ""
    return f"{counts}{shown(plan.extract_dir / 'chunks.jsonl')}"


def _said_datagen(plan: Plan, summary: Any) -> str:
    clean = getattr(summary, "clean", None) or {}
    counts = clean.get("counts") or {}
    split = " · ".join(f"{name} {counts[name]}" for name in ("train", "val", "test") if name in counts)
    probe = (clean.get("knowledge") or {}).get("kept")
    made = ", ".join(f for f in ("train.jsonl", "val.jsonl", "test.jsonl", "knowledge.jsonl")
                     if (plan.datagen_dir / f).exists())
    return (f"{sum(counts.values())} pairs ({split}), {probe or 0} knowledge-probe questions: {made} in "
            f"{shown(plan.datagen_dir)}/")


def _said_export(plan: Plan, result: Any) -> str:
    names = [p.name for p in _top_files(plan.export_dir) if p.suffix == ".gguf" or p.name == "Modelfile"]
    return f"{', '.join(names)} in {shown(plan.export_dir)}/"


STAGES: tuple[Stage, ...] = (
    Stage(
        # A hub model is pulled by the wrapper, once per machine, and pinned: the engines get a local folder and run
        # offline. Up to date while the pinned snapshot is complete on this machine.
        "model", "hub id -> local snapshot, pinned to a commit",
        enabled=lambda p: p.is_hub,
        params=lambda p: {k: getattr(p.recipe.model, k) for k in ("base", "hub", "revision")},
        inputs=lambda p: [],
        outputs=lambda p: [p.model_record],
        run=_run_model,
        unfinished=_model_missing,
    ),
    Stage(
        "extract", "documents -> section-aware chunks",
        enabled=lambda p: bool(p.recipe.extract.inputs),
        params=lambda p: _recipe_part(p, "extract"),
        inputs=lambda p: files_under(p.document_inputs),
        outputs=lambda p: [p.extract_dir / "chunks.jsonl"],
        run=_run_extract,
        said=_said_extract,
    ),
    Stage(
        "datagen", "chunks -> QA pairs, deduplicated and split",
        enabled=lambda p: p.recipe.datagen is not None,
        params=lambda p: _recipe_part(p, "datagen", "domain", "review"),
        inputs=lambda p: [p.extract_dir / "chunks.jsonl", *_datagen_prompt_file(p), *_curate_rubric_file(p),
                          *_review_journal(p)],
        outputs=lambda p: [p.datagen_dir / f for f in ("train.jsonl", "val.jsonl", "test.jsonl", "knowledge.jsonl",
                                                       "pretrain.jsonl")],
        run=_run_datagen,
        unfinished=datagen_unfinished,
        said=_said_datagen,
    ),
    Stage(
        "render", "recipe -> engine config files",
        enabled=lambda p: True,
        params=lambda p: {**_recipe_part(p, "name", "model", "dataset", "method", "training", "engine_overrides",
                                         "distributed"), "engine": p.engine, "model_path": p.model_path},
        inputs=lambda p: [*p.train_files, *p.val_files, *p.pretrain_files,
                          *([p.model_record] if p.is_hub and p.model_record.exists() else []), *_render_templates(p)],
        outputs=lambda p: [*_top_files(p.render_dir), *_top_files(p.render_dir / "data")],
        run=_run_render,
        said=lambda p, v: f"engine config and data in {shown(p.render_dir)}/ (its README.md has the commands)",
    ),
    Stage(
        "pretrain", "continued pre-training on the raw chunks -> the adapter training goes on from",
        enabled=lambda p: p.recipe.method.pretrain is not None,
        params=lambda p: {"engine": p.engine},
        inputs=_pretrain_inputs,
        outputs=_pretrain_outputs,
        run=_run_pretrain,
        said=lambda p, v: f"pre-trained adapter in {shown(p.pretrain_dir)}/ (training goes on from it)",
    ),
    Stage(
        "train", "engine subprocess -> adapter",
        enabled=lambda p: True,
        params=lambda p: {"engine": p.engine},
        inputs=lambda p: [*_top_files(p.render_dir), *_top_files(p.render_dir / "data"), *_pretrain_outputs(p)],
        outputs=_train_outputs,
        run=_run_train,
        said=lambda p, v: f"adapter in {shown(p.adapter_dir)}/",
    ),
    Stage(
        "export", "merge -> GGUF -> quantize -> Modelfile",
        enabled=lambda p: True,
        params=lambda p: _recipe_part(p, "export", "sampling", "model"),
        inputs=_train_outputs,
        outputs=lambda p: _top_files(p.export_dir),
        run=_run_export,
        said=_said_export,
    ),
    Stage(
        # After export: each GGUF it wrote is scored too, and a new GGUF reruns only what changed (lm-eval runs
        # whose weights and tasks are unchanged are reused).
        "eval", "lm-eval, base vs tuned vs each GGUF -> report",
        enabled=lambda p: True,
        params=lambda p: _recipe_part(p, "eval", "sampling", "model", "domain"),
        inputs=lambda p: [*_train_outputs(p), *[f for f in p.eval_split_files.values()], *_eval_ggufs(p),
                          *_eval_task_files(p), *_knowledge_probe(p)],
        outputs=lambda p: [p.eval_dir / f for f in ("report.json", "report.md", "report.png")],
        run=_run_eval,
        said=lambda p, v: f"report in {shown(p.eval_dir / 'report.md')} (and report.json, report.png)",
    ),
)


@dataclass
class StageOutcome:
    name: str
    action: str  # ran | skipped | disabled | excluded | failed
    reason: str = ""
    seconds: float = 0.0
    value: Any = None  # what the stage's run returned (ran only)


@dataclass
class RunResult:
    plan: Plan
    outcomes: list[StageOutcome] = field(default_factory=list)


def _check_stage_names(names: list[str], flag: str, known: tuple[str, ...]) -> None:
    from .errors import did_you_mean

    for name in names:
        if name not in known:
            hint = did_you_mean(name, known)
            raise UserError(f"unknown stage '{name}'", where=flag, hint=hint or f"stages: {', '.join(known)}")


def stages_to_run(plan: Plan, *, only: list[str] | None = None, skip: list[str] | None = None,
                  stages: tuple[Stage, ...] = STAGES) -> list[str]:
    """The stages a run with these --only/--skip would consider (enabled, not excluded), whether or not up to date."""
    names = tuple(s.name for s in stages)
    _check_stage_names(only or [], "--only", names)
    _check_stage_names(skip or [], "--skip", names)
    return [s.name for s in stages if s.enabled(plan) and (not only or s.name in only) and s.name not in (skip or [])]


def stale_reason(stage: Stage, plan: Plan, manifest: Manifest) -> str | None:
    """Why the stage must run, or None when it is up to date. Cheapest checks first."""
    record = manifest.stages.get(stage.name)
    if record is None or record.status != "done":
        return "never ran" if record is None or record.status == "pending" else f"last run {record.status}"
    params = stage.params(plan)
    if sha256_json(params) != record.params_hash:
        changed = _changed_keys(record.params, params)
        return f"parameters changed: {', '.join(changed[:4]) or 'recipe'}"
    inputs = {manifest.rel(p): p for p in stage.inputs(plan)}
    if set(inputs) != set(record.inputs):
        added = sorted(set(inputs) - set(record.inputs))
        removed = sorted(set(record.inputs) - set(inputs))
        return f"input set changed: {', '.join((['+' + a for a in added] + ['-' + r for r in removed])[:3])}"
    for key, path in inputs.items():
        if not record.inputs[key].matches(path):
            return f"input changed: {key}"
    if not record.outputs:
        return "no outputs recorded"
    if unfinished := stage.unfinished(plan):
        return unfinished
    for key, rec in record.outputs.items():
        if not rec.matches(manifest.abs(key)):
            return f"output missing or modified: {key}"
    return None


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[str] = []
        for k in sorted(set(old) | set(new)):
            keys += _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return keys
    return [] if old == new else [prefix.rstrip(".")]


def run_pipeline(
    plan: Plan,
    *,
    from_stage: str | None = None,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    dry_run: bool = False,
    stages: tuple[Stage, ...] = STAGES,
    rendered: dict[str, str] | None = None,
) -> RunResult:
    """`rendered`: the folder's files as the calling command already rendered and checked them for this plan; the
    render stage, when it runs, writes those instead of rendering again."""
    only, skip = only or [], skip or []
    stages = _rendering_once(plan, stages, rendered)
    names = tuple(s.name for s in stages)
    _check_stage_names(only, "--only", names)
    _check_stage_names(skip, "--skip", names)
    if from_stage:
        _check_stage_names([from_stage], "--from", names)
    if not dry_run:
        _make_run_dir(plan.run_dir)
    manifest = Manifest(plan.run_dir)
    selected = [s for s in stages if s.enabled(plan) and not ((only and s.name not in only) or s.name in skip)]
    if not dry_run:
        _preflight(plan, selected, manifest, forced=from_stage is not None)
    result = RunResult(plan)
    forced = False
    pending: str | None = None  # dry run: the first stage that would run
    for stage in stages:
        if from_stage == stage.name:
            forced = True
        if not stage.enabled(plan):
            result.outcomes.append(StageOutcome(stage.name, "disabled", "not in this recipe"))
            continue
        if (only and stage.name not in only) or stage.name in skip:
            result.outcomes.append(StageOutcome(stage.name, "excluded", "--only/--skip"))
            continue
        # Stages after one that reran are checked again: unchanged outputs upstream mean nothing to redo.
        reason = "forced (--from)" if forced else stale_reason(stage, plan, manifest)
        if reason is None and dry_run and pending:
            # Its inputs are the outputs of a stage that would rerun: it reruns too unless those come out identical.
            result.outcomes.append(StageOutcome(stage.name, "may run", f"if {pending} changes its outputs"))
            continue
        if reason is None:
            result.outcomes.append(StageOutcome(stage.name, "skipped", "up to date"))
            console.print(f"[dim]· {stage.name}: up to date, skipped[/dim]")
            continue
        if dry_run:
            result.outcomes.append(StageOutcome(stage.name, "would run", reason))
            pending = pending or stage.name
            continue
        console.print(f"[bold]▶ {stage.name}[/bold] [dim]({stage.doc}; {reason})[/dim]")
        if stage.name == "train" and plan.is_worker_node:
            # Only global rank 0 saves the adapter: a worker node trains, then leaves eval and export to node 0.
            start = time.perf_counter()
            stage.run(plan)
            result.outcomes.append(StageOutcome(stage.name, "ran (worker)", "adapter is saved on node 0",
                                                time.perf_counter() - start))
            break
        outcome = _execute(stage, plan, manifest, reason)
        result.outcomes.append(outcome)
        if outcome.action == "failed":
            break
    if not dry_run:
        # The wrapper's packages (lm-eval, llama.cpp, ...) and the engine venv's own pins differ by design.
        manifest.data["versions"] = package_versions()
        manifest.data["engine_versions"] = _engine_versions(plan)
        if plan.is_hub and (pinned := _pinned_model(plan)):
            manifest.data["model"] = pinned
        manifest.save()
    return result


def _preflight(plan: Plan, selected: list[Stage], manifest: Manifest, *, forced: bool) -> None:
    """What would fail a long run late, refused before its first stage (a pull or datagen can take an hour):
    training in bf16/fp16 on a machine without a CUDA GPU."""
    train = next((s for s in selected if s.name == "train"), None)
    if train is not None and (forced or stale_reason(train, plan, manifest) is not None):
        from .needs import require_gpu

        require_gpu(plan)


def _make_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError("run folder is a file", where=run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"run folder is not writable ({exc.strerror})", where=run_dir) from None


def _execute(stage: Stage, plan: Plan, manifest: Manifest, reason: str) -> StageOutcome:
    record = manifest.stage(stage.name)
    params = stage.params(plan)
    record.status, record.started_at, record.error = "running", time.time(), None
    record.params, record.params_hash = params, sha256_json(params)
    manifest.data.update(
        recipe=plan.recipe.model_dump(mode="json"),
        recipe_hash=plan.recipe_hash,
        recipe_file=str(plan.recipe.source) if plan.recipe.source else None,
        engine=plan.engine,
    )
    manifest.save()
    start = time.perf_counter()
    try:
        # Inputs are hashed before the stage runs: what it read, not what it left behind.
        inputs = {manifest.rel(p): FileRecord.of(p) for p in stage.inputs(plan) if p.exists()}
        value = stage.run(plan)
        missing = [p for p in stage.outputs(plan) if not p.exists()]
        if missing or not stage.outputs(plan):
            raise UserError(f"stage '{stage.name}' finished but wrote no {missing[0].name if missing else 'outputs'}",
                            where=plan.run_dir)
    except BaseException as exc:
        record.status = "failed"
        record.seconds = time.perf_counter() - start
        from .apikeys import redact  # a key in an error's text never reaches the manifest

        record.error = redact(exc.one_line() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}")
        if not isinstance(exc, (UserError, KeyboardInterrupt)):
            record.error += " | " + traceback.format_exc(limit=3).replace("\n", " ")
        manifest.save()
        raise
    record.inputs = inputs
    record.outputs = {manifest.rel(p): FileRecord.of(p) for p in stage.outputs(plan)}
    record.status = "done"
    record.seconds = time.perf_counter() - start
    manifest.save()
    if line := stage.said(plan, value):
        from rich.markup import escape

        console.print(f"[green]✓[/green] {stage.name}: {escape(line)}", soft_wrap=True, highlight=False)
    return StageOutcome(stage.name, "ran", reason, record.seconds, value)


def _pinned_model(plan: Plan) -> dict[str, Any] | None:
    """The hub model this run trains on, as its record pins it (hub, id, revision asked for, commit)."""
    from .hub import read_record

    record = read_record(plan.model_record)
    return {k: record.get(k) for k in ("hub", "id", "revision", "sha", "endpoint")} if record else None


def _engine_versions(plan: Plan) -> dict[str, str]:
    try:
        from .engines.venv import engine_versions

        return engine_versions(plan.engine)
    except Exception:  # versions are informative; a missing venv must not fail the run
        return {}


def outcomes_table(result: RunResult) -> Table:
    table = Table(title=f"domainft run {result.plan.recipe.name} ({result.plan.engine})")
    table.add_column("stage", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    table.add_column("why", overflow="fold")  # wraps: a path in it is never cut
    total = 0.0
    for o in result.outcomes:
        total += o.seconds
        table.add_row(o.name, o.action, f"{o.seconds:.1f}" if o.seconds else "", o.reason)
    table.add_row("total", "", f"{total:.1f}", "")
    return table
