"""Stage eval's tasks: the names eval_tasks/ offers (groups, domains, output types), the recipe's eval.tasks resolved
against them, and the task variants written into the run folder (held-out split, knowledge probe, your own items,
retrieval arm, chat-templated multiple choice for a GGUF).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from ..errors import UserError, did_you_mean
from ..plan import Plan
from ..resources import folder
from ..run_files import read_jsonl

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

# A multiple-choice task with its chat-templated prompts precomputed (<task>_chat): lm-eval's gguf model sends
# prompts as text, so the chat template is rendered first, as the HF runs render it. Its run is <quant>_mc.
CHAT_SUFFIX = "_chat"


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


def is_rubric(path: Path) -> bool:
    """A judge rubric beside the tasks (a YAML with a `scale`, no task or group): lm-eval never reads it, so an edit
    regrades answers without rerunning lm-eval."""
    if path.suffix != ".yaml":
        return False
    cfg = _read_task_yaml(path)
    return isinstance(cfg, dict) and "scale" in cfg and "task" not in cfg and "group" not in cfg


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
