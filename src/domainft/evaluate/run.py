"""Stage eval: lm-eval on the base model and on base + adapter, then a report a person can read.

lm-eval runs as a subprocess (`python -m lm_eval` from this interpreter) with the task folders of
eval_tasks/ as its include path, so what runs here is exactly what a user gets from plain `lm_eval`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import process
from ..errors import EngineError, UserError, did_you_mean
from ..plan import Plan
from ..resources import folder
from .report import write_report

HELDOUT_SUFFIX = "_heldout"

# Only these reach lm-eval: teacher API keys and other secrets stay out of its logs.
# What lm-eval needs beyond what every child gets (process.PASS_THROUGH).
ENV_ALSO = (
    "LC_", "PYTHONPATH", "VIRTUAL_ENV", "HF_DATASETS_CACHE", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "XDG_CACHE_HOME",
    "DOMAINFT_HOME", "CUDA_HOME", "LD_LIBRARY_PATH", "MKL_NUM_THREADS", "VLLM_WORKER_MULTIPROC_METHOD",
)
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
}
_TQDM = re.compile(r"(Running \w+ requests)\S*\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


@dataclass(frozen=True)
class LmEvalRun:
    label: str  # "base" or "tuned"
    argv: list[str]
    out_dir: Path


# ---------------------------------------------------------------- task names


def task_configs(tasks_dir: Path | None = None) -> dict[str, tuple[Path, dict]]:
    """Task and group names defined under eval_tasks/ -> (their YAML file, its config): a fast scan, no lm-eval
    import (lm-eval's `!function` tags read as None)."""
    tasks_dir = tasks_dir or folder("eval_tasks")
    loader = type("_TagTolerantLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)
    found: dict[str, tuple[Path, dict]] = {}
    for path in sorted(tasks_dir.rglob("*.yaml")):
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (SafeLoader subclass)
        if isinstance(cfg, dict):
            name = cfg.get("group") if "group" in cfg else cfg.get("task")
            if isinstance(name, str):
                found[name] = (path, cfg)
    return found


def known_tasks(tasks_dir: Path | None = None) -> dict[str, Path]:
    """Task and group names defined under eval_tasks/ -> their YAML file."""
    return {name: path for name, (path, _) in task_configs(tasks_dir).items()}


def domain_groups(tasks_dir: Path | None = None) -> dict[str, str]:
    """recipe.domain -> the task group evaluated when recipe.eval.tasks is empty. Data, not code: a group serves
    its own name, its folder's name, and the names in its `metadata.domains`."""
    out: dict[str, str] = {}
    for name, (path, cfg) in task_configs(tasks_dir).items():
        if "group" in cfg:
            meta = cfg.get("metadata") or {}
            for domain in [name, path.parent.name, *(meta.get("domains") or [])]:
                out.setdefault(str(domain), name)
    return out


def heldout_qa_tasks(tasks_dir: Path | None = None) -> dict[str, str]:
    """group -> its free-answer task, the one domainft re-points at datagen's held-out test split
    (`metadata.heldout_qa` in the group's YAML)."""
    return {name: str(cfg["metadata"]["heldout_qa"]) for name, (_, cfg) in task_configs(tasks_dir).items()
            if "group" in cfg and (cfg.get("metadata") or {}).get("heldout_qa")}


def resolve_tasks(plan: Plan) -> list[str]:
    """recipe.eval.tasks, or the domain's group; every name checked against eval_tasks/."""
    recipe = plan.recipe
    tasks = list(recipe.eval.tasks)
    if not tasks:
        groups = domain_groups()
        group = groups.get(recipe.domain)
        if group is None:
            raise UserError(
                f"no eval tasks for domain '{recipe.domain}'",
                where="eval.tasks",
                hint=f"list tasks, add a task group in eval_tasks/{recipe.domain}/, or use a domain that has one: "
                     f"{', '.join(sorted(set(groups)))}",
            )
        tasks = [group]
    known = known_tasks()
    for name in tasks:
        if name.endswith(".yaml"):
            if not recipe.resolve(name).exists():
                raise UserError(f"eval task file '{name}' not found", where="eval.tasks")
        elif name not in known:
            raise UserError(
                f"unknown eval task '{name}'",
                where="eval.tasks",
                hint=did_you_mean(name, known) or f"tasks in eval_tasks/: {', '.join(sorted(known))}",
            )
    return [str(recipe.resolve(t).resolve()) if t.endswith(".yaml") else t for t in tasks]


def heldout_task(plan: Plan, tasks: Iterable[str]) -> Path | None:
    """When datagen ran, write a QA task variant over its test split into the run folder; return its YAML."""
    test_split = plan.eval_split_files.get("test")
    if test_split is None:
        return None
    qa_tasks = heldout_qa_tasks()
    qa_task = next(
        (qa_tasks[t] for t in [domain_groups().get(plan.recipe.domain, ""), *tasks] if t in qa_tasks),
        next((t for t in tasks if t in qa_tasks.values()), None),
    )
    if qa_task is None:
        return None
    if not test_split.exists():
        raise UserError("datagen's test split is missing: run datagen before eval", where=test_split)
    if not test_split.read_text(encoding="utf-8").strip():
        return None  # split.test is 0: nothing held out
    base_yaml = known_tasks()[qa_task].resolve()
    out = plan.eval_dir / "tasks" / f"{qa_task}{HELDOUT_SUFFIX}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Written by domainft eval for recipe {plan.recipe.name} ({plan.recipe_hash[:12]}):\n"
        f"# {qa_task} over datagen's held-out test split of this run (lm-eval needs absolute paths).\n"
    )
    body = {
        "include": str(base_yaml),
        "task": f"{qa_task}{HELDOUT_SUFFIX}",
        "dataset_kwargs": {"data_file": str(test_split)},
        "metadata": {"version": 1.0, "text": "held-out"},  # not the hand-written set's "seen"
    }
    _write_if_changed(out, header + yaml.safe_dump(body, allow_unicode=True, sort_keys=False))
    return out


# ---------------------------------------------------------------- command lines


def model_args(plan: Plan, *, backend: str, base_path: str, adapter: Path | None, trained: Path) -> str:
    """lm-eval --model_args for the base model (adapter None) or base + adapter. `trained` is the adapter folder
    of this evaluation, whose tokenizer (the one the engine trained with) scores both runs."""
    recipe = plan.recipe
    args = {"pretrained": base_path}
    tokenizer_dir = trained if (trained / "tokenizer_config.json").exists() else None
    if recipe.method.kind == "full" and adapter is not None:
        args["pretrained"] = str(adapter)  # full fine-tuning: the "adapter" folder holds whole weights
    elif adapter is not None:
        if backend == "vllm":
            args["lora_local_path"] = str(adapter)  # lm-eval turns on vLLM's LoRA support from this
            args["max_lora_rank"] = str(max(16, recipe.method.rank))
        else:
            args["peft"] = str(adapter)
    if tokenizer_dir is not None:
        # The chat template the engine trained with is saved beside the adapter: score both runs with it.
        args["tokenizer"] = str(tokenizer_dir)
    if recipe.model.trust_remote_code:
        args["trust_remote_code"] = "True"
    args["enable_thinking"] = str(recipe.model.enable_thinking)
    if recipe.model.enable_thinking:
        args["think_end_token"] = "</think>"
    for key, value in args.items():
        if "," in value or "=" in value:
            raise UserError(f"lm-eval cannot take a {key} containing ',' or '='", where=value)
    return ",".join(f"{k}={v}" for k, v in args.items())


def gen_kwargs(plan: Plan) -> str:
    """Greedy decoding for scoring; length from eval.max_new_tokens, repetition penalty from sampling."""
    kwargs = {"do_sample": "False", "max_gen_toks": str(plan.recipe.eval.max_new_tokens)}
    if plan.recipe.sampling.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = str(plan.recipe.sampling.repetition_penalty)
    return ",".join(f"{k}={v}" for k, v in kwargs.items())


def lm_eval_argv(
    plan: Plan, *, label: str, tasks: list[str], limit: int | None, backend: str, base_path: str,
    adapter: Path | None, trained: Path, out_root: Path,
) -> list[str]:
    recipe = plan.recipe
    argv = [
        sys.executable, "-m", "lm_eval", "run",
        "--model", backend,
        "--model_args", model_args(plan, backend=backend, base_path=base_path, adapter=adapter, trained=trained),
        "--tasks", ",".join(tasks),
        "--include_path", str(folder("eval_tasks")),
        "--apply_chat_template",
        "--log_samples",
        "--output_path", str(out_root / label),
        # vLLM schedules its own batches; the hf backend takes the recipe's.
        "--batch_size", "auto" if backend == "vllm" else str(recipe.eval.batch_size),
        "--gen_kwargs", gen_kwargs(plan),
        "--seed", str(recipe.training.seed),
    ]
    if recipe.model.system_prompt:
        argv += ["--system_instruction", recipe.model.system_prompt]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return argv


def lm_eval_env(work_dir: Path) -> dict[str, str]:
    return {**process.clean_env(work_dir, also=ENV_ALSO), **OFFLINE_ENV}


# ---------------------------------------------------------------- the stage


def run_eval(plan: Plan, *, limit: int | None = None, backend: str | None = None) -> Path:
    """Evaluate base and base + adapter with lm-eval; write report.{json,md,png} into plan.eval_dir.

    `limit` (items per task) and `backend` ("hf" or "vllm") default to recipe.eval. Returns report.md.
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
    runs, heldout, base_path = lm_eval_runs(plan, tasks=tasks, limit=limit, backend=backend, adapter=adapter,
                                            out_root=plan.eval_dir / "lm_eval")
    outputs = {}
    for run in runs:
        outputs[run.label] = _run_lm_eval(run, fingerprint=_fingerprint(run, adapter if run.label == "tuned" else None,
                                                                          heldout))
    return write_report(
        plan.eval_dir,
        base=outputs["base"],
        tuned=outputs["tuned"],
        meta={
            "recipe": recipe.name,
            "recipe_hash": plan.recipe_hash,
            "base_model": base_path,
            "adapter": str(adapter),
            "backend": backend,
            "limit": limit,
            "heldout_task": heldout.stem if heldout else None,
            "loss_plot": str(adapter / "loss.png") if (adapter / "loss.png").exists() else None,
            "commands": {run.label: run.argv[1:] for run in runs},
        },
    )


def lm_eval_runs(plan: Plan, *, tasks: list[str], limit: int | None, backend: str, adapter: Path,
                 out_root: Path) -> tuple[list[LmEvalRun], Path | None, str]:
    """The two lm-eval runs (base, then base + adapter) on the same tasks and items, writing under out_root;
    with the held-out task over datagen's test split when there is one, and the base model's path."""
    heldout = heldout_task(plan, tasks)
    if heldout is not None:
        tasks = [*tasks, str(heldout)]
    base_path = _base_model(plan)
    plan.eval_dir.mkdir(parents=True, exist_ok=True)
    runs = [
        LmEvalRun(label, lm_eval_argv(plan, label=label, tasks=tasks, limit=limit, backend=backend,
                                      base_path=base_path, adapter=ad, trained=adapter, out_root=out_root),
                  out_root / label)
        for label, ad in (("base", None), ("tuned", adapter))
    ]
    return runs, heldout, base_path


def hand_commands(plan: Plan, *, limit: int | None = None, backend: str | None = None,
                  adapter: Path | None = None) -> str:
    """A shell script with the exact `lm_eval` command lines `domainft eval` runs, for a person to run by hand.

    Same tasks, items, model arguments, chat template, system instruction and generation settings; results go to
    eval/by_hand/<label> so they sit beside domainft's own (eval/lm_eval/<label>) instead of replacing them.
    """
    import shlex

    recipe = plan.recipe
    backend = backend or recipe.eval.backend
    limit = limit if limit is not None else recipe.eval.limit
    adapter = Path(adapter).resolve() if adapter is not None else plan.adapter_dir
    runs, heldout, _ = lm_eval_runs(plan, tasks=resolve_tasks(plan), limit=limit, backend=backend, adapter=adapter,
                                    out_root=plan.eval_dir / "by_hand")
    lines = [
        f"# lm-eval by hand for recipe {recipe.name}: the runs `domainft eval` makes (chat template, system "
        "instruction, greedy decoding,",
        f"# limit {limit}), base model first, then base + the adapter in {adapter}.",
        "# Needs lm_eval on PATH with the eval_tasks' own packages (domainft's venv: source .venv/bin/activate).",
        f"# lm-eval writes results_*.json and samples_*.jsonl under {plan.eval_dir / 'by_hand'}/{{base,tuned}}/.",
    ]
    if heldout is not None:
        lines.append(f"# {heldout.name} is written by domainft: the QA task over this run's held-out test split.")
    lines.append("export " + " ".join(f"{k}={v}" for k, v in OFFLINE_ENV.items() if k != "PYTHONUNBUFFERED"))
    for run in runs:
        lines.append(shlex.join(["lm_eval", *run.argv[3:]]))
    return "\n".join(lines) + "\n"


def _base_model(plan: Plan) -> str:
    if plan.is_embedded:
        from ..models.embedded import materialize

        return str(materialize(plan.recipe.model.base))
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


def _fingerprint(run: LmEvalRun, adapter: Path | None, heldout: Path | None) -> str:
    """What a run's results depend on beyond its command line: the weights, the tasks, the held-out data."""
    parts: list[str] = [json.dumps(run.argv[1:])]
    files = sorted(p for p in folder("eval_tasks").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if adapter is not None:
        files += sorted(p for p in adapter.iterdir() if p.is_file())
    if heldout is not None:
        files += [heldout, Path(yaml.safe_load(heldout.read_text())["dataset_kwargs"]["data_file"])]
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
    done = _stream(run, log_path)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise EngineError(f"lm-eval failed on the {run.label} model (exit {done.returncode}): {done.error(1)}",
                          where=log_path)
    results = _newest(run.out_dir, "results_*.json")
    if results is None:
        raise EngineError(f"lm-eval wrote no results for the {run.label} model", where=log_path)
    stamp.write_text(json.dumps({"fingerprint": fingerprint, "results": str(results), "seconds": seconds}) + "\n")
    return _collect(run, results, seconds, reused=False)


def _stream(run: LmEvalRun, log_path: Path) -> process.Finished:
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
        bar = progress.add_task(f"eval {run.label}: loading model", total=None)

        def show(line: str) -> None:
            match = _TQDM.search(line)
            if match:
                progress.update(bar, description=f"eval {run.label}: {match[1].lower()}",
                                completed=int(match[2]), total=int(match[3]))

        return process.run(run.argv, env=lm_eval_env(run.out_dir), cwd=run.out_dir, log_path=log_path, on_line=show)


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


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _console():
    from rich.console import Console

    return Console(stderr=True)
