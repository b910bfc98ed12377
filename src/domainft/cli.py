"""The `domainft` command: parse, build the plan, call one function.

Imports of anything heavy (torch, transformers, lm-eval, llama.cpp) happen inside the commands, so
`domainft validate` answers in well under a second.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

# Before pydantic loads: looking for pydantic plugins scans every installed distribution, which takes longer
# than validating a recipe (the ML stack beside domainft is large). A user's own setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer  # noqa: E402

from .engine_names import NAMES as ENGINES  # noqa: E402
from .errors import Terminated, UserError  # noqa: E402

app = typer.Typer(
    name="domainft",
    help="Documents in, a tuned, evaluated, GGUF-exported domain expert out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
engines_app = typer.Typer(help="Install and inspect the per-engine virtual environments.", no_args_is_help=True)
app.add_typer(engines_app, name="engines")
models_app = typer.Typer(help="Pull hub models onto this machine (once; every engine then runs offline).",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")


def _show_version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"domainft {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_show_version)] = False,
) -> None:
    """Documents in, a tuned, evaluated, GGUF-exported domain expert out."""


class _LazyConsole:
    """A rich Console made on first use: `validate` and error lines never pay for importing rich."""

    def __init__(self, **kwargs):
        self._kwargs, self._console = kwargs, None

    def __getattr__(self, name):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return getattr(self._console, name)


out = _LazyConsole()
err = _LazyConsole(stderr=True)


def _styled(text: str, color: str, stream) -> str:
    """ANSI colour only on a terminal, as rich would do (31 red, 32 green)."""
    return f"\033[{color}m{text}\033[0m" if stream.isatty() else text

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", "-s", help="Override a recipe value: key.path=value (repeatable).")
]
EngineOpt = Annotated[Optional[str], typer.Option("--engine", "-e", help=f"{' | '.join(ENGINES)} (default: the recipe's).")]
RunDirOpt = Annotated[Optional[Path], typer.Option("--run-dir", help="Run folder (default: runs/<recipe name>).")]
LauncherOpt = Annotated[Optional[str], typer.Option(
    "--launcher", help="local | slurm: train here, or submit the rendered launch.sbatch and follow the job "
    "(default: the recipe's distributed.launcher).")]


def _launcher(set_: list[str] | None, launcher: str | None) -> list[str]:
    """--launcher as the recipe override it is, so the schema checks it and the manifest records it."""
    return [*(set_ or []), *([f"distributed.launcher={launcher}"] if launcher else [])]


# This command's `-s` items: an error at a recipe key one of them set names the override, not the key (main()).
_OVERRIDES: list[str] = []


def _plan(recipe_path: Path, overrides: list[str] | None, engine: str | None = None, run_dir: Path | None = None,
          read: tuple[dict, object] | None = None):
    """`read`: the recipe file's data and YAML node when already read (recipe_file.read_recipe_data)."""
    from .plan import make_plan

    _OVERRIDES[:] = overrides or []
    from .recipe import recipe_from_dict
    from .recipe_file import read_recipe_data

    data, node = read or read_recipe_data(recipe_path, overrides)
    recipe = recipe_from_dict(data, source=Path(recipe_path), node=node, overrides=overrides)
    if engine is not None and engine not in ENGINES:
        from .errors import did_you_mean

        raise UserError(f"unknown engine '{engine}'", where="--engine",
                        hint=did_you_mean(engine, ENGINES) or f"engines: {', '.join(ENGINES)}")
    return make_plan(recipe, engine=engine, run_dir=run_dir)


@app.command()
def schema() -> None:
    """Print the recipe's JSON Schema (point your editor's YAML plugin at it)."""
    from .recipe import recipe_json_schema

    print(json.dumps(recipe_json_schema(), indent=2, ensure_ascii=False))


@app.command()
def recipes() -> None:
    """List the recipes that ship with domainft."""
    from rich.table import Table

    from .recipe import load_recipe
    from .resources import folder

    from rich.markup import escape

    # Two columns that fit 80 characters: the file name whole, then what it is and what it runs on.
    table = Table()
    table.add_column("recipe", no_wrap=True)
    table.add_column("what it trains", overflow="fold")
    for path in sorted(folder("recipes").glob("*.yaml")):
        r = load_recipe(path)
        table.add_row(path.name, f"{escape(r.description)}\n[dim]{r.engine} · {r.method.kind} · "
                                 f"{escape(r.model.base)}[/dim]")
    out.print(table)
    out.print(f"in {folder('recipes')}", soft_wrap=True, highlight=False, markup=False)
    out.print("or start from your own documents: domainft init FOLDER", highlight=False, markup=False)


@app.command()
def init(
    docs: Annotated[Path, typer.Argument(help="A folder (or file) of your documents: txt, md, html, docx, pdf.",
                                         show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Recipe file to write (default: "
                                                   "<name>.yaml here); never overwritten.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Recipe and run name (default: the folder's name).")] = None,
    lang: Annotated[Literal["auto", "zh", "en"], typer.Option(
        help="auto: each document asked in its own language; zh or en: all in one.")] = "auto",
) -> None:
    """Write a working recipe for your own documents (offline, CPU), print it and the command that runs it."""
    from .init_recipe import write_init_recipe

    path, text, notes = write_init_recipe(docs, output, name, lang)
    print(text, end="")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"\n{_styled('✓', '32', sys.stdout)} wrote {path}; next:\n  domainft run {path}")


@app.command()
def validate(
    recipe: RecipeArg,
    deep: Annotated[bool, typer.Option(help="Also run the engine's own validator inside its venv.")] = False,
    engine: EngineOpt = None,
    set_: SetOpt = None,
) -> None:
    """Check a recipe fast: schema, dataset files and columns, chat template, LoRA targets."""
    from .engines.checks import check_engine_keys, length_report
    from . import preflight
    from .needs import notes as machine_notes
    from .recipe_file import read_recipe_data
    from .render import render_checked

    read = read_recipe_data(recipe, set_)
    check_engine_keys(read[0], engine)  # before the schema: no pydantic import
    plan = _plan(recipe, set_, engine, read=read)
    render_checked(plan, deep=deep)
    preflight.check(plan)
    for note in [*preflight.notes(plan), *machine_notes(plan), *filter(None, [length_report(plan)])]:
        print(f"note: {note}", file=sys.stderr)
    print(f"{_styled('✓', '32', sys.stdout)} {recipe}: valid for {plan.engine}" + (" (deep)" if deep else ""))


@app.command()
def render(
    recipe: RecipeArg,
    engine: EngineOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder to write into (default: the run's render/<engine>/).")] = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
) -> None:
    """Write a self-contained folder the engine's own CLI trains from: its config, dataset_info.json (LLaMA-Factory),
    DeepSpeed JSON, a copy of the training data, and a README.md with the exact commands.

    The training data is brought up to date first (extract and datagen, skipped when current, as `domainft run`
    does), so the folder never points at a file that does not exist. Paths inside are relative to the folder:
    copy it anywhere and run the README's commands from inside it.
    """
    from .engines import get_engine
    from .engines.cluster import SCRIPT
    from .engines.folder import README, folder_files, write_folder
    from .pipeline import run_pipeline
    from .render import render_checked

    plan = _plan(recipe, set_, engine, run_dir)
    eng = get_engine(plan.engine)
    _materialize_embedded(plan)
    # Rendered once: recipe mistakes first, before any datagen. Datagen changes nothing the files say (the data
    # copies are made when written), only the data, which the render stage or check_dataset checks again.
    files = render_checked(plan)
    if output is not None and output.exists() and not output.is_dir():
        raise UserError("output folder is a file", where=output)
    stages = ["extract", "datagen"] if plan.recipe.datagen is not None else []
    if output is None:
        run_pipeline(plan, only=[*stages, "render"], rendered=files)  # the run's own folder: the manifest records it
        dest = plan.render_dir
        written = []
    else:
        if stages:
            from .engines.checks import check_dataset

            run_pipeline(plan, only=stages)
            check_dataset(plan)
        dest = output
        written = write_folder(plan, files, dest)
    for path in folder_files(plan, files, dest):
        mark = "written" if path.resolve() in written else ("unchanged" if output is not None else "")
        out.print(f"{path}  [dim]{mark}[/dim]")
    from .engines.checks import length_report
    from .pipeline import datagen_unfinished

    if stages and (unfinished := datagen_unfinished(plan)):
        err.print(f"note: datagen: {unfinished}; the folder trains on what was made (rerun to retry them)",
                  soft_wrap=True, markup=False, highlight=False)
    if note := length_report(plan):
        err.print(f"note: {note}", soft_wrap=True, markup=False, highlight=False)
    hand = f"sbatch {SCRIPT}" if SCRIPT in files else eng.hand_command()
    out.print(f"run by hand, from that folder: [bold]cd {dest} && {hand}[/bold]  "
              f"[dim](every command: {dest / README})[/dim]", soft_wrap=True)


@engines_app.command("install")
def engines_install(
    name: Annotated[str, typer.Argument(help=f"{' | '.join(ENGINES)} | all")] = "all",
) -> None:
    """Create each engine's venv (cached by lock hash; a second call is instant)."""
    from .engines.venv import ensure_engine

    names = list(ENGINES) if name == "all" else [name]
    for n in names:
        if n not in ENGINES:
            from .errors import did_you_mean

            raise UserError(f"unknown engine '{n}'", hint=did_you_mean(n, ENGINES) or f"engines: {', '.join(ENGINES)}")
        path = ensure_engine(n)
        out.print(f"[green]✓[/green] {n}: {path}")


@engines_app.command("path")
def engines_path(name: Annotated[str, typer.Argument(help=" | ".join(ENGINES))]) -> None:
    """Print an engine venv's folder, e.g. source "$(domainft engines path llamafactory)/bin/activate"."""
    from .engines.venv import require_engine

    print(require_engine(name))


@engines_app.command("status")
def engines_status() -> None:
    """Show each engine venv and whether it is ready."""
    from .engines.venv import engine_status

    for n in ENGINES:
        out.print(n, engine_status(n))


@app.command()
def doctor() -> None:
    """Report Python, torch, engine venvs, llama.cpp tools, the embedded model, GPU or not."""
    from .doctor import report

    out.print(report())


@models_app.command("pull")
def models_pull(
    target: Annotated[str, typer.Argument(help="A recipe YAML (its model.base, pinned in its run folder) or a hub id "
                                          "(owner/name).", show_default=False)],
    revision: Annotated[Optional[str], typer.Option(
        help="Branch, tag or commit (with a recipe: overrides model.revision).")] = None,
    hub: Annotated[Optional[str], typer.Option(help="huggingface | modelscope (default: the recipe's model.hub, "
                                                    "else huggingface).")] = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
) -> None:
    """Download a model's weights, config and tokenizer (resumable; once per machine), pinned to a commit.

    Hugging Face reads HF_TOKEN and HF_ENDPOINT (a mirror), ModelScope MODELSCOPE_API_TOKEN and MODELSCOPE_ENDPOINT;
    proxies (HTTPS_PROXY) apply. They reach this download only, never an engine.
    """
    from .hub import HUBS, pull

    if hub is not None and hub not in HUBS:
        from .errors import did_you_mean

        raise UserError(f"unknown hub '{hub}'", where="--hub", hint=did_you_mean(hub, HUBS) or f"hubs: {', '.join(HUBS)}")
    if target.endswith((".yaml", ".yml")) or Path(target).is_file():
        from .pipeline import run_pipeline

        overrides = [*(set_ or []), *([f"model.revision={revision}"] if revision else []),
                     *([f"model.hub={hub}"] if hub else [])]
        plan = _plan(Path(target), overrides, run_dir=run_dir)
        if not plan.is_hub:
            out.print(f"{plan.recipe.model.base}: not a hub model ({plan.model_path}); nothing to pull",
                      soft_wrap=True, markup=False, highlight=False)
            return
        run_pipeline(plan, only=["model"])
        from .hub import read_record

        record = read_record(plan.model_record) or {}
        where, files, size = record.get("path"), len(record.get("files", [])), record.get("bytes", 0)
        name, sha = f"{record.get('id')}@{str(record.get('sha'))[:12]}", record.get("sha")
    else:
        pulled = pull(hub or "huggingface", target, revision)
        if pulled.note:
            err.print(f"note: {pulled.note}", soft_wrap=True, markup=False, highlight=False)
        where, files, size = pulled.path, len(pulled.files), sum(f.size for f in pulled.files)
        name, sha = f"{target}@{pulled.sha[:12]}", pulled.sha
    out.print(f"[green]✓[/green] {name}: {files} files, {size / 1e9:.2f} GB in {where}", soft_wrap=True,
              highlight=False)
    out.print(f"  pinned to {sha}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def extract(
    target: Annotated[Path, typer.Argument(help="A recipe YAML, or a folder/file of documents.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="chunks.jsonl to write.")] = None,
    chunk_chars: Annotated[Optional[int], typer.Option(help="Chunk size (folder mode; default: the schema's).")] = None,
    overlap_chars: Annotated[Optional[int], typer.Option(help="Overlap (folder mode; default: the schema's).")] = None,
    set_: SetOpt = None,
) -> None:
    """Split documents into section-aware chunks with provenance, and show a table per file."""
    from . import extract as ex
    from .pipeline import shown
    from .recipe import ExtractConfig

    if target.suffix in (".yaml", ".yml") and target.is_file():
        # Through the pipeline: the manifest records it (`status` shows it, the next datagen does not extract again).
        from .pipeline import run_pipeline

        plan = _plan(target, set_)
        if not plan.recipe.extract.inputs:
            raise UserError("no documents to extract: set extract.inputs", where=target)
        from .preflight import check_documents

        check_documents(plan)
        outcome = next(o for o in run_pipeline(plan, only=["extract"]).outcomes if o.name == "extract")
        if outcome.value is not None:
            ex.print_extract_table(outcome.value, console=out)
        else:
            out.print(f"chunks: {shown(plan.extract_dir / 'chunks.jsonl')} (up to date)", soft_wrap=True)
        return
    if not target.exists():
        raise UserError("no such file or folder", where=target)
    defaults = ExtractConfig()
    result = ex.extract_inputs([target], chunk_chars=chunk_chars or defaults.chunk_chars,
                               overlap_chars=defaults.overlap_chars if overlap_chars is None else overlap_chars)
    if result.chunks:
        ex.write_chunks(result, output or Path("chunks.jsonl"))
    ex.print_extract_table(result, console=out)
    if not result.chunks:
        reasons = "; ".join(f"{s.file}: {s.reason}" for s in result.skipped[:3])
        raise UserError(f"no text extracted ({reasons or 'no readable documents'})", where=target)
    out.print(f"[green]✓[/green] {len(result.chunks)} chunks written to {shown(output or Path('chunks.jsonl'))}",
              soft_wrap=True, highlight=False)


@app.command()
def datagen(
    recipe: RecipeArg,
    split_unit: Annotated[Optional[Literal["document", "section", "auto"]], typer.Option(
        "--split-unit", help="document | section | auto: what stays whole on one side of the split "
        "(default: the recipe's datagen.split.unit).")] = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
) -> None:
    """Generate QA pairs from the recipe's documents with its teacher (resumable), deduplicate, and split."""
    from .pipeline import run_pipeline

    # A flag is a recipe override, so the manifest records it and a change reruns the split.
    plan = _plan(recipe, [*(set_ or []), *([f"datagen.split.unit={split_unit}"] if split_unit else [])], run_dir=run_dir)
    if plan.recipe.datagen is None:
        raise UserError("the recipe makes no pairs: set extract.inputs (documents to learn from)", where=recipe)
    from .datagen.table import summary_table
    from .pipeline import shown
    from .preflight import check

    check(plan, evaluate=False)  # documents and prompts, before any chunk is sent
    # Through the pipeline so the manifest records it; extract reruns only when documents changed.
    run_pipeline(plan, only=["extract", "datagen"])
    summary = json.loads((plan.datagen_dir / "summary.json").read_text(encoding="utf-8"))
    out.print(summary_table(summary, title=f"datagen {plan.recipe.name}"))
    made = ", ".join(f for f in ("train.jsonl", "val.jsonl", "test.jsonl", "knowledge.jsonl", "summary.json")
                     if (plan.datagen_dir / f).exists())
    out.print(f"in {shown(plan.datagen_dir)}/: {made}", soft_wrap=True, highlight=False, markup=False)
    if summary.get("failed"):
        raise UserError(f"{summary['failed']} chunk(s) failed; rerun to retry them", where=plan.datagen_dir / "summary.json")


@app.command()
def train(recipe: RecipeArg, engine: EngineOpt = None, set_: SetOpt = None, run_dir: RunDirOpt = None,
          launcher: LauncherOpt = None) -> None:
    """Render, then train with the engine from its own venv (resumes from the last checkpoint); with the slurm
    launcher, through a Slurm job on every node."""
    from .pipeline import run_pipeline

    plan = _plan(recipe, _launcher(set_, launcher), engine, run_dir)
    from .needs import require_gpu

    require_gpu(plan)  # bf16/fp16 cannot train without a CUDA GPU: said before any pull or datagen
    # The model first (a hub model is pulled once per machine, pinned): its errors come before any datagen.
    if plan.recipe.datagen is not None and not plan.eval_split_files["val"].exists():
        run_pipeline(plan, only=["model", "extract", "datagen"])
    result = run_pipeline(plan, only=["model", "render", "pretrain", "train"])
    if any(o.action == "ran (worker)" for o in result.outcomes):
        out.print("[green]✓[/green] worker node done; the adapter is saved on node 0 (NODE_RANK=0)")
    else:
        out.print(f"[green]✓[/green] adapter: {plan.adapter_dir}")


ForceOpt = Annotated[bool, typer.Option("--force", help="Run even when up to date.")]


@app.command(name="eval")
def eval_(
    recipe: RecipeArg,
    limit: Annotated[Optional[int], typer.Option(help="Items per task (default: the recipe's eval.limit).", min=1)] = None,
    backend: Annotated[Optional[Literal["hf", "vllm"]], typer.Option(help="hf | vllm (default: the recipe's eval.backend).")] = None,
    print_commands: Annotated[bool, typer.Option(
        "--print-commands", help="Print the exact lm_eval command lines (base, then tuned) as a shell script; run nothing.")] = False,
    adapter: Annotated[Optional[Path], typer.Option(
        help="With --print-commands: an adapter trained elsewhere (e.g. by hand in a rendered folder's output/).")] = None,
    force: ForceOpt = False,
    engine: EngineOpt = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
) -> None:
    """Run the domain's lm-eval tasks on base and tuned; write report.md/json/png."""
    from .pipeline import run_pipeline

    # Flags are recipe overrides, so the manifest records exactly what was evaluated.
    overrides = [*(set_ or []), *([f"eval.limit={limit}"] if limit is not None else []),
                 *([f"eval.backend={backend}"] if backend else [])]
    plan = _plan(recipe, overrides, engine, run_dir)
    if adapter is not None and not print_commands:
        raise UserError("--adapter goes with --print-commands (domainft eval scores the run's own adapter)",
                        where="--adapter")
    if print_commands:
        from .evaluate.run import hand_commands

        if adapter is not None and not adapter.is_dir():
            raise UserError("no such adapter folder", where=adapter)
        print(hand_commands(plan, adapter=adapter), end="")
        return
    run_pipeline(plan, only=["model", "eval"], from_stage="eval" if force else None)
    out.print(f"[green]✓[/green] report: {plan.eval_dir / 'report.md'}")


@app.command()
def export(
    recipe: RecipeArg,
    quant: Annotated[Optional[str], typer.Option(help="Comma list: q4_k_m,q4_0,q8_0,f16 (default: the recipe's).")] = None,
    force: ForceOpt = False,
    engine: EngineOpt = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
) -> None:
    """Merge the adapter, convert to GGUF, quantize, and write an Ollama Modelfile."""
    from rich.table import Table

    from .export import parse_quants
    from .pipeline import run_pipeline

    overrides = [*(set_ or []), *([f"export.quantizations={json.dumps(parse_quants(quant))}"] if quant else [])]
    plan = _plan(recipe, overrides, engine, run_dir)
    run_pipeline(plan, only=["model", "export"], from_stage="export" if force else None)
    from .pipeline import shown
    from .run_files import read_export_record

    record = read_export_record(plan.export_dir)

    table = Table("file", "quant", "MB", "sha256", caption=f"in {shown(plan.export_dir)}/", caption_justify="left")
    for f in record["files"]:
        table.add_row(f["path"], f["quant"] or "", f"{f['bytes'] / 1e6:.1f}", f["sha256"][:16])
    out.print(table)


@app.command()
def chat(
    target: Annotated[Path, typer.Argument(help="A recipe (uses its run's GGUF or adapter), a .gguf file, or a model or adapter folder.")],
    question: Annotated[Optional[str], typer.Option("--question", "-q", help="Ask one question and exit.")] = None,
    questions: Annotated[Optional[Path], typer.Option(help="Questions file: a JSON array (strings or objects with question or input), JSONL, or text, one per line.")] = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="Where batch answers go.")] = Path("results.json"),
    backend: Annotated[Literal["auto", "gguf", "hf"], typer.Option(help="auto | gguf | hf")] = "auto",
    think: Annotated[Literal["show", "hide"], typer.Option(help="show | hide R1-style <think> blocks.")] = "hide",
    engine: EngineOpt = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    rag: Annotated[bool, typer.Option("--rag", help="Put the run's best-matching passages (BM25) before each "
                                      "question and cite them (file and section); needs a recipe.")] = False,
) -> None:
    """Talk to the model: interactive, one question (-q), or a questions file (--questions)."""
    from . import chat as chat_mod

    if target.suffix in (".yaml", ".yml"):
        source, settings = _plan(target, set_, engine, run_dir), None
    else:  # a .gguf file or a model folder: -s sets how to talk to it
        source, settings = target, chat_mod.ChatSettings.from_overrides(set_ or [])
    chat_mod.main(source, question=question, questions=questions, output=output, backend=backend, think=think,
                  settings=settings, rag=rag)


def _preflight(plan, stages: list[str]) -> dict[str, str] | None:
    """Before the first long stage: everything `validate` checks that these stages need, and the notes it prints.
    Returns the folder's files when the stages render it (rendered and checked here, once: the render stage
    writes them)."""
    from . import preflight

    files = None
    if {"render", "train"} & set(stages):
        from .render import render_checked

        _materialize_embedded(plan)
        files = render_checked(plan)
    preflight.check(plan, for_run=True, evaluate="eval" in stages)
    for note in preflight.notes(plan):
        if "eval" in stages or not note.startswith("nothing to evaluate"):
            err.print(f"note: {note}", soft_wrap=True, markup=False, highlight=False)
    return files


def _materialize_embedded(plan) -> None:
    """An embedded model is made (once) before the folder is rendered: the folder names it, and ms-swift's config
    reads its config.json."""
    if plan.is_embedded:
        from .models.embedded import materialize

        materialize(plan.recipe.model.base)


@app.command()
def run(
    recipe: RecipeArg,
    from_: Annotated[Optional[str], typer.Option("--from", help="Rerun from this stage on.")] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Run only this stage (repeatable).")] = None,
    skip: Annotated[Optional[list[str]], typer.Option(help="Skip this stage (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would run, run nothing.")] = False,
    ask: Annotated[Optional[str], typer.Option(help="Question for the final model (default: one from the data).")] = None,
    engine: EngineOpt = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    launcher: LauncherOpt = None,
) -> None:
    """All stages: extract → datagen → render → train → eval → export, skipping what is up to date."""
    from .pipeline import outcomes_table, run_pipeline, stages_to_run

    plan = _plan(recipe, _launcher(set_, launcher), engine, run_dir)
    rendered = _preflight(plan, stages_to_run(plan, only=only, skip=skip))
    result = run_pipeline(plan, from_stage=from_, only=only, skip=skip, dry_run=dry_run, rendered=rendered)
    out.print(outcomes_table(result))
    if dry_run:
        return
    from .chat import final_answer

    answer = final_answer(plan, ask)
    if answer is not None:
        out.print(answer, soft_wrap=True, markup=False, highlight=False)  # model text is not rich markup


@app.command()
def review(
    recipe: RecipeArg,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: a free one).", min=0, max=65535)] = 0,
    export: Annotated[Optional[Path], typer.Option(
        "--export", help="Write the pairs a person accepted or edited to this JSONL file, and exit.")] = None,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
) -> None:
    """Read every generated pair beside its source and accept, reject or edit it in a local page; the next run
    trains on the decisions (journal: RUN_DIR/review/journal.jsonl)."""
    plan = _plan(recipe, set_, run_dir=run_dir)
    if plan.recipe.datagen is None:
        raise UserError("the recipe has no datagen section: there are no generated pairs to review", where=recipe)
    if export is not None:
        from .review.pairs import export_reviewed

        count = export_reviewed(plan, export)
        print(f"{count} reviewed pair{'s' if count != 1 else ''} written to {export}")
        return
    from .review.web import serve  # the web stack loads only here: the other commands stay fast

    def announce(url: str) -> None:
        print(f"review {plan.recipe.name}: {url}  (Ctrl+C to stop; decisions go to {plan.review_journal})",
              flush=True)

    serve(plan, port=port, announce=announce)


@app.command()
def status(run_folder: Annotated[Path, typer.Argument(help="A run folder (runs/<name>).")]) -> None:
    """Show a run's manifest: stages, status, timings, outputs."""
    from .lineage import status_table

    out.print(status_table(run_folder))


@app.command()
def lineage(file: Annotated[Path, typer.Argument(help="Any file in a run folder.")]) -> None:
    """Answer 'what made this file': stage, inputs with hashes, parameters, recipe, versions."""
    from .lineage import lineage_tree

    out.print(lineage_tree(file))


def usage_line(exc: typer.TyperException) -> str:
    """A command-line mistake (click's usage error) as one line: the command, what was wrong, the nearest valid
    choice, and where the help is. A value that looks like a pasted key is not repeated."""
    import re

    from .errors import did_you_mean
    from .apikeys import redact

    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "domainft"
    message = exc.format_message().strip()
    hint = None
    if type(exc).__name__ == "NoSuchOption":
        option = getattr(exc, "option_name", "")
        message = f"no such option '{option}'"
        hint = did_you_mean(option, getattr(exc, "possibilities", None) or [])
    elif m := re.match(r"No such command '(.*)'\.(?: Did you mean '(.*)'\?)?$", message):
        message = f"no such command '{m.group(1)}'"
        hint = f"did you mean '{m.group(2)}'?" if m.group(2) else None
    elif message.startswith("Got unexpected extra argument"):
        found = re.search(r"\(([^()]*)\)$", message)
        extra = found.group(1).split() if found else []
        message = f"unexpected extra argument{'s' if len(extra) > 1 else ''} {' '.join(map(repr, extra))}"
        if extra and all(Path(a).exists() for a in extra):
            hint = "a shell glob that matched several files? quote it, or name one file"
    else:
        message = message[:1].lower() + message[1:].rstrip(".")
        if m := re.search(r"'([^']*)' is not one of (.*)$", message):
            hint = did_you_mean(m.group(1), re.findall(r"'([^']*)'", m.group(2)))
    text = f"{command}: {message}" + (f" ({hint})" if hint else "")
    return redact(" ".join(text.split())) + f"; see '{command} --help'"


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        code = app(prog_name="domainft", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into exit code 130 and, outside standalone mode, returns it
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except UserError as exc:
        import re

        from .apikeys import redact

        if exc.where and _OVERRIDES and re.fullmatch(r"[a-z_]+(\.[a-z0-9_]+)*", exc.where):
            from .recipe import override_where

            exc.where = override_where(exc.where.split("."), _OVERRIDES) or exc.where
        print(f"{_styled('error:', '31', sys.stderr)} {redact(exc.one_line())}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; rerun the same command to resume")
        sys.exit(130)
    except Terminated:
        err.print("terminated; rerun the same command to resume")
        sys.exit(143)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:  # click's usage errors: unknown command, option or value, missing argument
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
            sys.exit(exc.exit_code)
        print(f"{_styled('error:', '31', sys.stderr)} {usage_line(exc)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
