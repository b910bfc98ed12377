"""The eval judge (eval.judge): an LLM grades each free answer lm-eval generated against the item's reference
(and its source, when the item has one) on a rubric (eval_tasks/judge_rubric.yaml by default, 0..3), reported
as score / top score so it sits beside ROUGE-L on 0..1.

Only generate_until rows are graded (multiple-choice rows, which carry `choices`, are skipped). An answer the
judge could not grade is listed under `failed` with its reason and left out of the mean; it is never a zero.
Verdicts are cached in <out_dir>/judge_cache.jsonl, so a rerun grades only what changed or failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..recipe import JudgeConfig
from ..run_files import read_jsonl
from .metrics import strip_think

JUDGE_FIELDS = ("question", "answer", "reference", "source")
CACHE_NAME = "judge_cache.jsonl"


def answer_text(row: dict[str, Any]) -> str:
    """The generated answer of one lm-eval sample row, <think> blocks removed."""
    resp: Any = row.get("filtered_resps") or row.get("resps") or [""]
    while isinstance(resp, list):
        resp = resp[0] if resp else ""
    return strip_think(str(resp)).strip()


def read_samples(path: Path) -> list[dict[str, Any]]:
    """lm-eval --log_samples rows of a generate_until task (multiple-choice rows are skipped)."""
    return [row for row in read_jsonl(path) if "choices" not in (row.get("doc") or {})]


def _source(doc: dict[str, Any]) -> str:
    # Hand-written items name the file (source) and sometimes quote the passage (evidence); use what is there.
    parts = [str(doc[k]) for k in ("source", "article", "evidence") if doc.get(k)]
    return " · ".join(parts)


def judge_runs(plan_or_cfg: Any, runs: dict[str, dict[str, Path]], out_dir: Path, *, progress: bool = True,
               console=None) -> dict[str, dict[str, dict[str, Any]]]:
    """Grade every generated answer in `runs` ({label: {task: samples_*.jsonl}}, e.g. {"base": ..., "tuned": ...}).

    `plan_or_cfg`: a Plan (its recipe's eval.judge and folder are used) or a JudgeConfig (a rubric path then
    resolves against the current directory). Returns {label: {task: {
        "mean": float | None,          # mean normalised score (0..1) over judged items; None when none judged
        "n_judged": int, "n_failed": int,
        "failed": [{"doc_id": ..., "reason": str}],
        "items": {doc_id: float},       # normalised score (0..1) per judged item, for paired statistics
        "judge_model": str}}}.
    Raises TeacherError (where eval.judge.*) when the judge cannot work at all, RecipeError for a bad rubric."""
    from ..judge import JudgeItem, judge_items, load_rubric

    if isinstance(plan_or_cfg, JudgeConfig):
        cfg, base_dir = plan_or_cfg, None
    else:
        cfg, base_dir = plan_or_cfg.recipe.eval.judge, plan_or_cfg.recipe.base_dir
        if cfg is None:
            raise ValueError("the recipe has no eval.judge section")
    rubric = load_rubric(cfg.rubric, home="eval_tasks", base_dir=base_dir, fields=JUDGE_FIELDS,
                         where="eval.judge.rubric")
    items, index = [], {}
    for label, tasks in runs.items():
        for task, path in tasks.items():
            for row in read_samples(Path(path)):
                doc = row.get("doc") or {}
                item_id = f"{label}/{task}/{row.get('doc_id')}"
                index[item_id] = (label, task, row.get("doc_id"))
                items.append(JudgeItem(item_id, {
                    "question": str(doc.get("question", "")), "answer": answer_text(row),
                    "reference": str(doc.get("answer", "")), "source": _source(doc),
                }))
    out_dir.mkdir(parents=True, exist_ok=True)
    outcome = judge_items(items, cfg, rubric, out_dir / CACHE_NAME, where="eval.judge", progress=progress,
                          console=console, label="judge")
    low, span = rubric.low, rubric.high - rubric.low
    result: dict[str, dict[str, dict[str, Any]]] = {
        label: {task: {"mean": None, "n_judged": 0, "n_failed": 0, "failed": [], "items": {}, "judge_model": cfg.model}
                for task in tasks} for label, tasks in runs.items()}
    for item_id, verdict in outcome.verdicts.items():
        label, task, doc_id = index[item_id]
        entry = result[label][task]
        if verdict.judged:
            entry["items"][doc_id] = (verdict.score - low) / span
            entry["n_judged"] += 1
        else:
            entry["failed"].append({"doc_id": doc_id, "reason": verdict.failure})
            entry["n_failed"] += 1
    for tasks in result.values():
        for entry in tasks.values():
            if entry["items"]:
                entry["mean"] = sum(entry["items"].values()) / len(entry["items"])
    return result
