"""Stage eval: lm-eval on the base model, on base + adapter and on each exported GGUF, then a report.

lm-eval runs as a subprocess (`python -m lm_eval` from this interpreter) with the task folders of
eval_tasks/ as its include path, so what runs here is exactly what a user gets from plain `lm_eval`.
A GGUF is served by `python -m llama_cpp.server` on 127.0.0.1 and scored by lm-eval's own
`local-chat-completions` model: the server applies the GGUF's chat template, as `domainft chat` and Ollama do.
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
from ..run_files import read_export_record, read_jsonl
from ..llama_server import server_argv, serving
from .report import write_report

HELDOUT_SUFFIX = "_heldout"
KNOWLEDGE_SUFFIX = "_knowledge"
RAG_SUFFIX = "_rag"  # a free-answer task again, with the passages retrieval found before each question
RUN_QA = "run_qa"  # eval_tasks/_run/run_qa.yaml: the free-answer template for a domain without its own
# What each run-made task measures, in the report's words.
MEASURES = {
    "heldout": "answers about text it never read (questions on passages held out of training)",
    "knowledge": "whether it learned its documents (questions held out of training, on passages it trained on)",
}

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
_TQDM = re.compile(r"(Running \w+ requests|Requesting API)\S*\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


# In a GGUF run's command line until the server is up and its port known; the fingerprint never sees the port.
SERVER_URL = "http://127.0.0.1:PORT/v1"
SERVER_ROOT = "http://127.0.0.1:PORT"  # lm-eval's gguf model appends /v1/completions itself
# A multiple-choice task with its chat-templated prompts precomputed (<task>_chat): lm-eval's gguf model sends
# prompts as text, so the chat template is rendered first, as the HF runs render it. Its run is <quant>_mc.
CHAT_SUFFIX = "_chat"
MC_RUN = "_mc"


@dataclass(frozen=True)
class LmEvalRun:
    label: str  # "base", "tuned", or a GGUF's quantization ("q4_k_m")
    argv: list[str]
    out_dir: Path
    gguf: Path | None = None  # served by llama_cpp.server for this run; argv holds SERVER_URL until then


# ---------------------------------------------------------------- task names


def task_configs(tasks_dir: Path | None = None) -> dict[str, tuple[Path, dict]]:
    """Task and group names defined under eval_tasks/ -> (their YAML file, its config): a fast scan, no lm-eval
    import (lm-eval's `!function` tags read as None)."""
    tasks_dir = tasks_dir or folder("eval_tasks")
    found: dict[str, tuple[Path, dict]] = {}
    for path in sorted(tasks_dir.rglob("*.yaml")):
        cfg = _read_task_yaml(path)
        if isinstance(cfg, dict):
            name = cfg.get("group") if "group" in cfg else cfg.get("task")
            if isinstance(name, str):
                found[name] = (path, cfg)
    return found


class _TagTolerantLoader(yaml.SafeLoader):
    pass


_TagTolerantLoader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)


def _read_task_yaml(path: Path) -> dict | None:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_TagTolerantLoader)  # noqa: S506 (SafeLoader subclass)


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
        if group is None and recipe.datagen is not None:
            return []  # the tasks made from the run's own data (held-out passages, knowledge probe) only
        if group is None:
            raise UserError(
                f"no eval tasks for domain '{recipe.domain}'",
                where="eval.tasks",
                hint="set extract.inputs (the run's held-out passages and knowledge probe become tasks), list your "
                     "own questions in eval.tasks (a JSONL file of question/answer lines, relative to the recipe), "
                     f"or use a domain that has tasks: {', '.join(sorted(set(groups)))}",
            )
        tasks = [group]
    known = known_tasks()
    for name in tasks:
        if name.endswith((".yaml", ".jsonl")):
            if not recipe.resolve(name).is_file():
                raise UserError(f"eval task file '{name}' not found ({recipe.resolve(name)})", where="eval.tasks")
        elif name not in known:
            raise UserError(
                f"unknown eval task '{name}'",
                where="eval.tasks",
                hint=did_you_mean(name, known) or f"tasks in eval_tasks/: {', '.join(sorted(known))}",
            )
    return [str(recipe.resolve(t).resolve()) if t.endswith((".yaml", ".jsonl")) else t for t in tasks]


OWN_ITEMS = "your own questions (a file of question/answer items listed in eval.tasks)"


def items_task(plan: Plan, items: Path) -> Path:
    """Hand-written items (a JSONL file of {"question", "answer"[, "keywords"]} lines listed in eval.tasks): a
    variant of the generic free-answer task over them, named after the file (my_questions.jsonl: my_questions)."""
    name = re.sub(r"[^a-z0-9_]", "_", items.stem.lower()).strip("_") or "items"
    if name in known_tasks():
        name += "_items"
    return _task_variant(plan, name, RUN_QA, items, OWN_ITEMS)


def generation_tasks(tasks: Iterable[str], tasks_dir: Path | None = None) -> list[str]:
    """The generate_until tasks among `tasks` (groups expanded, task YAML files followed through `include`)."""
    return tasks_of_type(tasks, "generate_until", tasks_dir)


def multiple_choice_tasks(tasks: Iterable[str], tasks_dir: Path | None = None) -> list[str]:
    return tasks_of_type(tasks, "multiple_choice", tasks_dir)


def tasks_of_type(tasks: Iterable[str], kind: str, tasks_dir: Path | None = None) -> list[str]:
    """The tasks of one output_type among `tasks` (groups expanded, task YAML files followed through `include`)."""
    configs = task_configs(tasks_dir)
    out: list[str] = []

    def output_type(cfg: dict, path: Path) -> str | None:
        if "output_type" in cfg or "include" not in cfg:
            return cfg.get("output_type")
        included = (path.parent / str(cfg["include"])).resolve()
        return output_type(_read_task_yaml(included) or {}, included)

    def visit(name: str) -> None:
        if name.endswith(".yaml"):
            path = Path(name)
            cfg = _read_task_yaml(path) or {}
            if output_type(cfg, path) == kind:
                out.append(name)
            return
        path, cfg = configs[name]
        if "group" in cfg:
            for member in cfg.get("task") or []:
                visit(member if isinstance(member, str) else member.get("task", ""))
        elif output_type(cfg, path) == kind:
            out.append(name)

    for name in tasks:
        visit(name)
    return list(dict.fromkeys(out))


def exported_ggufs(plan: Plan) -> list[tuple[str, Path]]:
    """(quantization, file) for each GGUF the last export wrote that the recipe asks for, in the recipe's order;
    the f16 intermediate only when it is one of them."""
    record = read_export_record(plan.export_dir)
    if record is None:
        return []
    files = {f["quant"]: plan.export_dir / f["path"] for f in record["files"] if f["kind"] == "gguf"}
    return [(q, files[q]) for q in plan.recipe.export.quantizations if q in files and files[q].exists()]


def qa_template(plan: Plan, tasks: Iterable[str]) -> str:
    """The free-answer task the run-made tasks are variants of: the domain's own (`metadata.heldout_qa` of its
    group, or of a group or task listed in eval.tasks), else the generic eval_tasks/_run/run_qa.yaml."""
    tasks = list(tasks)
    qa_tasks = heldout_qa_tasks()
    return next((qa_tasks[t] for t in [domain_groups().get(plan.recipe.domain, ""), *tasks] if t in qa_tasks),
                next((t for t in tasks if t in qa_tasks.values()), RUN_QA))


def _domain_slug(plan: Plan) -> str:
    return re.sub(r"[^a-z0-9_]", "_", plan.recipe.domain)


def heldout_task(plan: Plan, tasks: Iterable[str]) -> Path | None:
    """When datagen ran, write a free-answer task variant over its test split into the run folder; return its
    YAML. Named after the domain's QA task (coal_safety_qa_heldout), or <domain>_heldout on the generic one."""
    test_split = plan.eval_split_files.get("test")
    if test_split is None:
        return None
    if not test_split.exists():
        raise UserError("datagen's test split is missing: run datagen before eval", where=test_split)
    if not test_split.read_text(encoding="utf-8").strip():
        return None  # split.test is 0: nothing held out
    qa_task = qa_template(plan, tasks)
    name = f"{qa_task if qa_task != RUN_QA else _domain_slug(plan)}{HELDOUT_SUFFIX}"
    return _task_variant(plan, name, qa_task, test_split, MEASURES["heldout"])


def knowledge_task(plan: Plan, tasks: Iterable[str]) -> Path | None:
    """When datagen wrote a knowledge probe, a free-answer task variant over it (<domain>_knowledge)."""
    probe = plan.knowledge_file
    if probe is None or not probe.exists() or not probe.read_text(encoding="utf-8").strip():
        return None
    name = f"{_domain_slug(plan)}{KNOWLEDGE_SUFFIX}"
    return _task_variant(plan, name, qa_template(plan, tasks), probe, MEASURES["knowledge"])


def run_made_tasks(plan: Plan, tasks: Iterable[str]) -> dict[str, Path]:
    """kind ("heldout", "knowledge") -> the task variant over this run's own data, for those it has."""
    tasks = list(tasks)
    made = {"heldout": heldout_task(plan, tasks), "knowledge": knowledge_task(plan, tasks)}
    return {kind: path for kind, path in made.items() if path is not None}


def retrieval_tasks(plan: Plan, tasks: Iterable[str]) -> list[Path]:
    """eval.retrieval: each free-answer task again (<task>_rag), each question preceded by the top passages BM25
    finds in the run's own chunks, precomputed into the variant's data file (its `prompt` field) so plain lm_eval
    reproduces it; the question itself stays what is scored against."""
    cfg = plan.recipe.eval
    if cfg.retrieval is None:
        return []
    from ..retrieval import run_retriever, with_passages

    chunks_file = plan.extract_dir / "chunks.jsonl"
    if not chunks_file.exists():
        raise UserError("eval.retrieval searches the run's own chunks: run extract first", where=chunks_file)
    retriever = run_retriever(chunks_file)
    out = []
    for task in generation_tasks(tasks):
        yaml_path, name, data_file = _task_data(task)
        rows = read_jsonl(data_file)
        for row in rows:
            question = _question(row)
            row["prompt"] = with_passages(question, retriever.search(question, cfg.retrieval_top_k))
        target = plan.eval_dir / "tasks" / f"{name}{RAG_SUFFIX}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_if_changed(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        out.append(_task_variant(plan, f"{name}{RAG_SUFFIX}", str(yaml_path), target,
                                 f"{name} with the top {cfg.retrieval_top_k} passages of this run's chunks (BM25) "
                                 "before each question", doc_to_text="{{prompt}}"))
    return out


def chat_templated_tasks(plan: Plan, tasks: Iterable[str], *, trained: Path, base_path: str) -> list[Path]:
    """Each multiple-choice task with its prompts chat-templated ahead of time (<task>_chat): the text the HF runs
    score (the system prompt and the task's doc_to_text, rendered by the tokenizer the engine trained with), in the
    data file's `prompt` field, for lm-eval's gguf model, which sends prompts as text."""
    mc = multiple_choice_tasks(tasks)
    if not mc:
        return []
    import jinja2
    from transformers import AutoTokenizer

    from .metrics import mc_row

    recipe = plan.recipe
    tokenizer = AutoTokenizer.from_pretrained(str(trained if (trained / "tokenizer_config.json").exists() else base_path),
                                              trust_remote_code=recipe.model.trust_remote_code)
    env = jinja2.Environment()
    out = []
    for task in mc:
        yaml_path, name, data_file = _task_data(task)
        template = env.from_string(str(_task_key(yaml_path, "doc_to_text") or "{{question}}"))
        rows = read_jsonl(data_file)
        for i, row in enumerate(rows):
            system = [{"role": "system", "content": recipe.model.system_prompt}] if recipe.model.system_prompt else []
            user = {"role": "user", "content": template.render(**mc_row(row, i))}
            row["prompt"] = tokenizer.apply_chat_template([*system, user], tokenize=False, add_generation_prompt=True,
                                                          enable_thinking=recipe.model.enable_thinking)
        target = plan.eval_dir / "tasks" / f"{name}{CHAT_SUFFIX}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_if_changed(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        # Under a chat template lm-eval puts no delimiter between the prompt and each choice.
        out.append(_task_variant(plan, f"{name}{CHAT_SUFFIX}", str(yaml_path), target,
                                 f"{name} with its chat-templated prompts rendered ahead of time, for a GGUF",
                                 doc_to_text="{{prompt}}", target_delimiter=""))
    return out


def _task_key(path: Path, key: str):
    """A key of a task YAML, following `include`."""
    cfg = _read_task_yaml(path) or {}
    while key not in cfg and "include" in cfg:
        path = (path.parent / str(cfg["include"])).resolve()
        cfg = _read_task_yaml(path) or {}
    return cfg.get(key)


def _task_data(task: str) -> tuple[Path, str, Path]:
    """A task's YAML, name and data file (a name in eval_tasks/ or a variant's path; `include` followed)."""
    path = Path(task) if task.endswith(".yaml") else known_tasks()[task]
    cfg = _read_task_yaml(path) or {}
    name = str(cfg.get("task") or path.stem)
    at, data = path, (cfg.get("dataset_kwargs") or {}).get("data_file")
    while data is None and "include" in cfg:
        at = (at.parent / str(cfg["include"])).resolve()
        cfg = _read_task_yaml(at) or {}
        data = (cfg.get("dataset_kwargs") or {}).get("data_file")
    if data is None:
        raise UserError(f"task '{name}' names no data file: eval.retrieval cannot prepare it", where=path)
    data_path = Path(data) if Path(data).is_absolute() else at.parent / data
    return path.resolve(), name, data_path


def _question(row: dict) -> str:
    """What a QA item asks (as scoring.qa_row reads it)."""
    question = row.get("question") or row.get("instruction") or ""
    return f"{question}\n{row['input']}" if row.get("input") and not row.get("question") else question


def _task_variant(plan: Plan, name: str, base_task: str, data_file: Path, measures: str, **keys: str) -> Path:
    """A task YAML in the run folder: `base_task` (a task in eval_tasks/, or a YAML path) over `data_file` (lm-eval
    needs absolute paths), with extra keys such as a doc_to_text."""
    base_yaml = Path(base_task).resolve() if base_task.endswith(".yaml") else known_tasks()[base_task].resolve()
    out = plan.eval_dir / "tasks" / f"{name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Written by domainft eval for recipe {plan.recipe.name} ({plan.recipe_hash[:12]}):\n"
              f"# {base_yaml.stem} over {data_file.name} of this run: {measures}.\n")
    body = {"include": str(base_yaml), "task": name, "dataset_kwargs": {"data_file": str(data_file)}, **keys,
            "metadata": {"version": 1.0}}
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
    """Plain greedy decoding for scoring, length from eval.max_new_tokens. No repetition penalty on any model:
    transformers applies it over the whole prompt and answer, llama.cpp over the last 64 tokens, so with one the
    GGUF column would measure the sampler, not the quantization (on the demo, at 1.1 the two answer differently;
    at 1.0 they give the same text)."""
    return f"do_sample=False,max_gen_toks={plan.recipe.eval.max_new_tokens}"


def lm_eval_argv(
    plan: Plan, *, label: str, tasks: list[str], limit: int | None, backend: str, base_path: str,
    adapter: Path | None, trained: Path, out_root: Path,
) -> list[str]:
    """lm-eval on the base model (adapter None) or base + adapter, through its hf or vllm model."""
    return _argv(
        plan, model=backend, label=label, tasks=tasks, limit=limit, out_root=out_root,
        model_args=model_args(plan, backend=backend, base_path=base_path, adapter=adapter, trained=trained),
        # vLLM schedules its own batches; the hf backend takes the recipe's.
        batch_size="auto" if backend == "vllm" else str(plan.recipe.eval.batch_size),
        gen_kwargs=gen_kwargs(plan),
    )


def gguf_mc_argv(plan: Plan, *, label: str, tasks: list[str], limit: int | None, out_root: Path) -> list[str]:
    """lm-eval on a GGUF behind llama_cpp.server (which keeps every token's logits, so /v1/completions echoes the
    prompt's log-probabilities), through domainft.evaluate.lm_gguf: lm-eval's `gguf` model, counting the context's
    tokens where lm-eval's own compares character offsets that a chat template's special tokens throw off. The
    chat-templated multiple-choice variants, prompts sent as text."""
    return _argv(plan, model="domainft-gguf", label=label, tasks=tasks, limit=limit, out_root=out_root,
                 model_args=f"base_url={SERVER_ROOT}", batch_size="1", gen_kwargs=None, chat=False,
                 entry="domainft.evaluate.lm_gguf")


def gguf_argv(plan: Plan, *, label: str, tasks: list[str], limit: int | None, out_root: Path,
              url: str = SERVER_URL) -> list[str]:
    """lm-eval on a GGUF behind llama_cpp.server (`url`): lm-eval's `local-chat-completions` model, the same
    tasks, items, system instruction, answer length and greedy decoding as the HF runs. The server applies the
    GGUF's own chat template (the tokenizer's, written in by the converter), as `domainft chat` does."""
    recipe = plan.recipe
    args = {"model": label, "base_url": f"{url}/chat/completions", "tokenizer_backend": "none",
            "num_concurrent": "1", "max_retries": "3", "timeout": "600"}
    if recipe.model.enable_thinking:
        args["think_end_token"] = "</think>"
    # llama_cpp.server's own default repeat_penalty is 1.1: off, as for the HF runs (see gen_kwargs).
    kwargs = {"do_sample": "False", "max_gen_toks": str(recipe.eval.max_new_tokens), "repeat_penalty": "1.0"}
    return _argv(plan, model="local-chat-completions", label=label, tasks=tasks, limit=limit, out_root=out_root,
                 model_args=",".join(f"{k}={v}" for k, v in args.items()), batch_size="1",
                 gen_kwargs=",".join(f"{k}={v}" for k, v in kwargs.items()))


def _argv(plan: Plan, *, model: str, model_args: str, label: str, tasks: list[str], limit: int | None,
          out_root: Path, batch_size: str, gen_kwargs: str | None, chat: bool = True,
          entry: str = "lm_eval") -> list[str]:
    """What every run shares: the tasks of eval_tasks/, the chat template, the recipe's system prompt, per-item
    samples, the seed, and its own output folder. `chat` False: the prompts are chat-templated already. `entry`:
    the module that runs lm-eval's CLI (lm_eval itself, or one that adds a model to it)."""
    recipe = plan.recipe
    argv = [
        sys.executable, "-m", entry, "run",
        "--model", model,
        "--model_args", model_args,
        "--tasks", ",".join(tasks),
        "--include_path", str(folder("eval_tasks")),
        *(["--apply_chat_template"] if chat else []),
        "--log_samples",
        "--output_path", str(out_root / label),
        "--batch_size", batch_size,
        *(["--gen_kwargs", gen_kwargs] if gen_kwargs else []),
        "--seed", str(recipe.training.seed),
    ]
    if recipe.model.system_prompt and chat:
        argv += ["--system_instruction", recipe.model.system_prompt]
    if limit is not None:
        argv += ["--limit", str(limit)]
    return argv


def lm_eval_env(work_dir: Path) -> dict[str, str]:
    return {**process.clean_env(work_dir, also=ENV_ALSO), **OFFLINE_ENV}


# ---------------------------------------------------------------- the stage


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


def _is_rubric(path: Path) -> bool:
    """A judge rubric beside the tasks (a YAML with a `scale`, no task or group): lm-eval never reads it, so an edit
    regrades answers without rerunning lm-eval."""
    if path.suffix != ".yaml":
        return False
    cfg = _read_task_yaml(path)
    return isinstance(cfg, dict) and "scale" in cfg and "task" not in cfg and "group" not in cfg


def _fingerprint(run: LmEvalRun, weights: list[Path], variants: list[Path]) -> str:
    """What a run's results depend on beyond its command line (a GGUF server's port aside): the weights (adapter
    files, or the GGUF), the tasks, the task variants written into the run folder and their data."""
    parts: list[str] = [json.dumps(run.argv[1:])]
    files = sorted(p for p in folder("eval_tasks").rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and not _is_rubric(p))
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


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _console():
    from rich.console import Console

    return Console(stderr=True)
