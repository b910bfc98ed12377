"""Stage eval: lm-eval on the base model, on base + adapter and on each exported GGUF, then a report.

lm-eval runs as a subprocess (`python -m lm_eval` from this interpreter) with the task folders of
eval_tasks/ as its include path, so what runs here is exactly what a user gets from plain `lm_eval`.
A GGUF is served by `python -m llama_cpp.server` on 127.0.0.1 and scored by lm-eval's own
`local-chat-completions` model: the server applies the GGUF's chat template, as `domainft chat` and Ollama do.
Which tasks run is tasks.py's to say, the command lines argv.py's; this module runs them and writes the report.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import process
from ..errors import EngineError, UserError
from ..llama_server import server_argv, serving
from ..plan import Plan
from ..resources import folder
from ..run_files import read_export_record
from .argv import OFFLINE_ENV, SERVER_ROOT, SERVER_URL, gguf_argv, gguf_mc_argv, lm_eval_argv, lm_eval_env
from .report import write_report
from .tasks import (
    CHAT_SUFFIX,
    MEASURES,
    RAG_SUFFIX,
    chat_templated_tasks,
    generation_tasks,
    is_rubric,
    items_task,
    resolve_tasks,
    retrieval_tasks,
    run_made_tasks,
)

_TQDM = re.compile(r"(Running \w+ requests|Requesting API)\S*\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
MC_RUN = "_mc"  # the run of a GGUF on the <task>_chat variants (tasks.CHAT_SUFFIX)


@dataclass(frozen=True)
class LmEvalRun:
    label: str  # "base", "tuned", or a GGUF's quantization ("q4_k_m")
    argv: list[str]
    out_dir: Path
    gguf: Path | None = None  # served by llama_cpp.server for this run; argv holds SERVER_URL until then


def exported_ggufs(plan: Plan) -> list[tuple[str, Path]]:
    """(quantization, file) for each GGUF the last export wrote that the recipe asks for, in the recipe's order;
    the f16 intermediate only when it is one of them."""
    record = read_export_record(plan.export_dir)
    if record is None:
        return []
    files = {f["quant"]: plan.export_dir / f["path"] for f in record["files"] if f["kind"] == "gguf"}
    return [(q, files[q]) for q in plan.recipe.export.quantizations if q in files and files[q].exists()]


def run_eval(plan: Plan, *, limit: int | None = None, backend: str | None = None) -> Path:
    """Evaluate base, base + adapter and each exported GGUF with lm-eval; write report.{json,md,png} into
    plan.eval_dir.

    `limit` (items per task) and `backend` ("hf" or "vllm") default to recipe.eval. GGUFs are those in the run's
    export.json (recipe.eval.gguf switches them off). Returns report.md.
    """
    recipe = plan.recipe
    backend = backend or recipe.eval.backend
    limit = limit if limit is not None else recipe.eval.limit
    if backend not in ("hf", "vllm"):
        raise UserError(f"unknown backend '{backend}'", where="eval.backend", hint="use hf or vllm")
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UserError("backend 'vllm' needs the vllm package (GPU machines): pip install vllm, or use --backend hf",
                        where="eval.backend")
    if importlib.util.find_spec("lm_eval") is None:
        raise UserError("eval needs lm-eval: pip install 'domainft[ml]'")
    tasks = resolve_tasks(plan)  # recipe mistakes first, missing artifacts after
    adapter = _trained_output(plan)
    runs, made, base_path = lm_eval_runs(plan, tasks=tasks, limit=limit, backend=backend, adapter=adapter,
                                         out_root=plan.eval_dir / "lm_eval")
    outputs = {}
    for run in runs:
        weights = [run.gguf] if run.gguf else _files(adapter) if run.label == "tuned" else []
        outputs[run.label] = _run_lm_eval(run, fingerprint=_fingerprint(run, weights, list(made.values())))
    ggufs = _gguf_columns([outputs[run.label] for run in runs if run.gguf])
    judged = None
    if recipe.eval.judge is not None:
        from .judged import judge_runs

        # Cached by question, answer, rubric and judge: only answers that changed are graded again.
        judged = judge_runs(plan, {label: out["samples"] for label, out in outputs.items()}, plan.eval_dir / "judge",
                            console=_console())
    from .provenance import task_provenance

    return write_report(
        plan.eval_dir,
        base=outputs["base"],
        tuned=outputs["tuned"],
        ggufs=ggufs,
        judged=judged,
        meta={
            "recipe": recipe.name,
            "recipe_hash": plan.recipe_hash,
            "base_model": base_path,
            "adapter": str(adapter),
            "backend": backend,
            "limit": limit,
            "heldout_task": made["heldout"].stem if "heldout" in made else None,
            "knowledge_task": made["knowledge"].stem if "knowledge" in made else None,
            "measures": {made[kind].stem: MEASURES[kind] for kind in MEASURES if kind in made},
            "retrieval": {"method": recipe.eval.retrieval, "top_k": recipe.eval.retrieval_top_k,
                          "suffix": RAG_SUFFIX} if recipe.eval.retrieval else None,
            "provenance": task_provenance(plan, outputs["tuned"]["samples"]),
            "loss_plot": str(adapter / "loss.png") if (adapter / "loss.png").exists() else None,
            "ggufs": {run.label: str(run.gguf) for run in runs if run.gguf},
            "gguf_note": None,
            "judge_rubric": recipe.eval.judge.rubric if recipe.eval.judge else None,
            "commands": {run.label: run.argv[1:] for run in runs},
        },
    )


def lm_eval_runs(plan: Plan, *, tasks: list[str], limit: int | None, backend: str, adapter: Path,
                 out_root: Path, with_ggufs: bool = True) -> tuple[list[LmEvalRun], dict[str, Path], str]:
    """The lm-eval runs on the same tasks and items, writing under out_root: base, then base + adapter, then each
    exported GGUF (its generate_until tasks); with the tasks made from the run's own data (held-out split,
    knowledge probe, and with eval.retrieval each free-answer task's retrieval arm, on base and tuned only) when
    there are any, and the base model's path."""
    tasks = [str(items_task(plan, Path(t))) if t.endswith(".jsonl") else t for t in tasks]
    made = run_made_tasks(plan, tasks)
    tasks = [*tasks, *(str(path) for path in made.values())]
    rag = retrieval_tasks(plan, tasks)
    for path in rag:
        made[path.stem] = path
    if not tasks:
        raise UserError(f"nothing to evaluate: domain '{plan.recipe.domain}' has no task group and datagen left "
                        "no held-out split or knowledge probe", where="eval.tasks",
                        hint="list tasks in eval.tasks, or set datagen.split.test above 0")
    base_path = _base_model(plan)
    plan.eval_dir.mkdir(parents=True, exist_ok=True)
    runs = [
        LmEvalRun(label, lm_eval_argv(plan, label=label, tasks=[*tasks, *map(str, rag)], limit=limit, backend=backend,
                                      base_path=base_path, adapter=ad, trained=adapter, out_root=out_root),
                  out_root / label)
        for label, ad in (("base", None), ("tuned", adapter))
    ]
    ggufs = exported_ggufs(plan) if plan.recipe.eval.gguf and with_ggufs else []
    gen_tasks = generation_tasks(tasks) if ggufs else []
    mc_tasks = chat_templated_tasks(plan, tasks, trained=adapter, base_path=base_path) if ggufs else []
    for quant, path in ggufs:
        if gen_tasks:
            runs.append(LmEvalRun(quant, gguf_argv(plan, label=quant, tasks=gen_tasks, limit=limit, out_root=out_root),
                                  out_root / quant, gguf=path))
        if mc_tasks:
            label = f"{quant}{MC_RUN}"
            runs.append(LmEvalRun(label, gguf_mc_argv(plan, label=label, tasks=[str(t) for t in mc_tasks], limit=limit,
                                                      out_root=out_root), out_root / label, gguf=path))
    made.update({path.stem: path for path in mc_tasks})
    return runs, made, base_path


def hand_commands(plan: Plan, *, limit: int | None = None, backend: str | None = None,
                  adapter: Path | None = None) -> str:
    """A shell script with the exact `lm_eval` command lines `domainft eval` runs, for a person to run by hand.

    Same tasks, items, model arguments, chat template, system instruction and generation settings; results go to
    eval/by_hand/<label> so they sit beside domainft's own (eval/lm_eval/<label>) instead of replacing them. Each
    exported GGUF is served by `python -m llama_cpp.server` on a free loopback port for its run, then stopped.
    """
    import shlex

    recipe = plan.recipe
    backend = backend or recipe.eval.backend
    limit = limit if limit is not None else recipe.eval.limit
    adapter = Path(adapter).resolve() if adapter is not None else plan.adapter_dir
    # The run's GGUFs were exported from the run's adapter: another adapter gets no GGUF runs beside it.
    runs, made, _ = lm_eval_runs(plan, tasks=resolve_tasks(plan), limit=limit, backend=backend, adapter=adapter,
                                    out_root=plan.eval_dir / "by_hand", with_ggufs=adapter == plan.adapter_dir)
    labels = ",".join(run.label for run in runs)
    lines = [
        f"# lm-eval by hand for recipe {recipe.name}: the runs `domainft eval` makes (chat template, system "
        "instruction, greedy decoding,",
        f"# limit {limit}), base model first, then base + the adapter in {adapter}"
        + (", then each exported GGUF behind llama_cpp.server." if any(r.gguf for r in runs) else "."),
        "# Needs lm_eval on PATH with the eval_tasks' own packages (domainft's venv: source .venv/bin/activate).",
        f"# lm-eval writes results_*.json and samples_*.jsonl under {plan.eval_dir / 'by_hand'}/{{{labels}}}/.",
    ]
    for kind, path in made.items():
        what = MEASURES.get(kind) or ("a multiple-choice task on its chat-templated prompts, for a GGUF"
                                      if kind.endswith(CHAT_SUFFIX) else
                                      "a free-answer task with retrieved passages before each question (eval.retrieval)")
        lines.append(f"# {path.name} is written by domainft over this run's own data; it measures {what}.")
    lines.append("set -e")
    lines.append("export " + " ".join(f"{k}={v}" for k, v in OFFLINE_ENV.items() if k != "PYTHONUNBUFFERED"))
    for run in runs:
        argv = ["lm_eval", *run.argv[3:]] if run.argv[2] == "lm_eval" else ["python", *run.argv[1:]]
        if run.gguf is None:
            lines.append(shlex.join(argv))
            continue
        log = plan.eval_dir / "by_hand" / f"{run.label}.server.log"
        server = ["python", *server_argv(run.gguf, port="$PORT", alias=run.label, seed=recipe.training.seed)[1:]]
        lines += [
            f"# {run.label}: serve {run.gguf.name} on a free port, wait until it answers, score it, stop it.",
            "PORT=$(python -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); "
            "print(s.getsockname()[1])')",
            " ".join(shlex.quote(a) if a != "$PORT" else '"$PORT"' for a in server)
            + f" > {shlex.quote(str(log))} 2>&1 &",
            "SERVER=$!",
            "until python -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/v1/models')\" "
            "2> /dev/null; do sleep 1; done",
            " ".join('"' + a.replace(SERVER_URL, "http://127.0.0.1:$PORT/v1").replace(SERVER_ROOT, "http://127.0.0.1:$PORT")
                     + '"' if SERVER_ROOT in a else shlex.quote(a) for a in argv),
            "kill $SERVER; wait $SERVER || true",
        ]
    return "\n".join(lines) + "\n"


def _gguf_columns(outputs: list[dict]) -> list[dict]:
    """One column per GGUF: its multiple-choice run (<quant>_mc, on the <task>_chat variants) folded into its
    free-answer run under the tasks' own names, so the report pairs them with the HF runs item by item."""
    columns: dict[str, dict] = {}
    for out in outputs:
        quant = out["label"].removesuffix(MC_RUN)
        rename = (lambda t: t.removesuffix(CHAT_SUFFIX)) if out["label"].endswith(MC_RUN) else (lambda t: t)
        col = columns.setdefault(quant, {"label": quant, "results": {}, "samples": {}, "seconds": 0.0,
                                         "reused": True, "parts": []})
        for key in ("results", "higher_is_better", "n-samples", "configs"):
            col["results"].setdefault(key, {}).update(
                {rename(t): v for t, v in (out["results"].get(key) or {}).items()})
        col["samples"].update({rename(t): p for t, p in out["samples"].items()})
        col["seconds"] += out["seconds"]
        col["reused"] = col["reused"] and out["reused"]
        col["parts"].append(out)
        col.setdefault("results_path", out["results_path"])
    return list(columns.values())


def _base_model(plan: Plan) -> str:
    if plan.is_embedded or plan.is_hub:
        from ..models import base_folder

        return str(base_folder(plan))
    path = plan.model_path
    if path.startswith(("/", ".", "~")) and not Path(path).exists():
        raise UserError("base model folder not found", where="model.base")
    return path


def _trained_output(plan: Plan) -> Path:
    out = plan.adapter_dir
    marker = "config.json" if plan.recipe.method.kind == "full" else "adapter_config.json"
    if not (out / marker).exists():
        raise UserError(f"no trained {'model' if marker == 'config.json' else 'adapter'} ({marker}): run train first",
                        where=out)
    return out


def _files(folder_path: Path) -> list[Path]:
    return sorted(p for p in folder_path.iterdir() if p.is_file())


def _fingerprint(run: LmEvalRun, weights: list[Path], variants: list[Path]) -> str:
    """What a run's results depend on beyond its command line (a GGUF server's port aside): the weights (adapter
    files, or the GGUF), the tasks, the task variants written into the run folder and their data."""
    parts: list[str] = [json.dumps(run.argv[1:])]
    files = sorted(p for p in folder("eval_tasks").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and not is_rubric(p))
    files += weights
    for variant in variants:
        files += [variant, Path(yaml.safe_load(variant.read_text(encoding="utf-8"))["dataset_kwargs"]["data_file"])]
    for path in files:
        stat = path.stat()
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _run_lm_eval(run: LmEvalRun, *, fingerprint: str) -> dict:
    """Run (or reuse, when nothing it depends on changed) one lm-eval evaluation; return its outputs."""
    stamp = run.out_dir / "domainft-run.json"
    if stamp.exists():
        previous = json.loads(stamp.read_text())
        results = Path(previous.get("results", ""))
        if previous.get("fingerprint") == fingerprint and results.exists():
            _console().print(f"[dim]eval {run.label}: unchanged since last run, reusing {results.name}[/dim]")
            return _collect(run, results, previous.get("seconds", 0.0), reused=True)
    if run.out_dir.exists():
        # Old result files would be picked up as this run's: keep the last set aside, not mixed in.
        previous_dir = run.out_dir.with_name(f"{run.label}.previous")
        shutil.rmtree(previous_dir, ignore_errors=True)
        run.out_dir.rename(previous_dir)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    log_path = run.out_dir.parent / f"{run.label}.log"
    started = time.monotonic()
    if run.gguf is None:
        done = _stream(run.label, run.argv, run.out_dir, log_path)
    else:
        # The server's whole output stays beside lm-eval's log: eval/lm_eval/<quant>.server.log.
        with serving(run.gguf, log_path=run.out_dir.parent / f"{run.label}.server.log", alias=run.label,
                     seed=_seed(run.argv)) as served:
            argv = [a.replace(SERVER_URL, served.url).replace(SERVER_ROOT, served.url.removesuffix("/v1"))
                    for a in run.argv]
            done = _stream(run.label, argv, run.out_dir, log_path)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise EngineError(f"lm-eval failed on the {run.label} model (exit {done.returncode}): {done.error(1)}",
                          where=log_path)
    results = _newest(run.out_dir, "results_*.json")
    if results is None:
        raise EngineError(f"lm-eval wrote no results for the {run.label} model", where=log_path)
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "results": str(results), "seconds": seconds}) + "\n")
    return _collect(run, results, seconds, reused=False)


def _seed(argv: list[str]) -> int:
    return int(argv[argv.index("--seed") + 1])


def _stream(label: str, argv: list[str], out_dir: Path, log_path: Path) -> process.Finished:
    """Run lm-eval, teeing its output to a log and its tqdm bars into one rich progress bar."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=_console(), transient=False) as progress:
        bar = progress.add_task(f"eval {label}: loading model", total=None)

        def show(line: str) -> None:
            match = _TQDM.search(line)
            if match:
                progress.update(bar, description=f"eval {label}: {match[1].lower()}",
                                completed=int(match[2]), total=int(match[3]))

        return process.run(argv, env=lm_eval_env(out_dir), cwd=out_dir, log_path=log_path, on_line=show)


def _collect(run: LmEvalRun, results: Path, seconds: float, *, reused: bool) -> dict:
    samples = {}
    for path in sorted(results.parent.glob("samples_*.jsonl")):
        task = re.sub(r"^samples_(.+)_\d{4}-\d{2}-\d{2}T[\d\-.]+$", r"\1", path.stem)
        samples[task] = path
    return {
        "label": run.label,
        "results_path": results,
        "results": json.loads(results.read_text(encoding="utf-8")),
        "samples": samples,
        "seconds": seconds,
        "reused": reused,
    }


def _newest(root: Path, pattern: str) -> Path | None:
    found = [p for p in root.rglob(pattern) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def _console():
    from rich.console import Console

    return Console(stderr=True)
