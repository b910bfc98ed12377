"""Curation: an LLM judge rates each generated pair (faithful to its chunk, useful, self-contained) on a rubric
(datagen/curate_rubric.yaml by default) before dedup and split.

A pair whose overall score is under `datagen.curate.threshold` is set aside: not trained on, written with its
scores and the judge's reason to set_aside.jsonl. A pair the judge could not rate (retries spent, no usable
reply) is kept and counted as unrated, and a rerun asks the judge again; rated pairs are cached and never
judged twice. Every pair gets one row in curation.jsonl: pair_id, status (kept / set_aside / unrated), score,
scores, reason, judge_model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..extract import Chunk
from ..fsutil import atomic_write_jsonl
from ..judge import JudgeItem, Rubric, judge_items, load_rubric
from ..recipe import CurateConfig
from ..review.journal import pair_id

# What the rubric's template may use, per pair.
CURATE_FIELDS = ("question", "answer", "source", "title", "heading")
CACHE_NAME = "curate_cache.jsonl"


def load_curate_rubric(cfg: CurateConfig, base_dir: Path | None) -> Rubric:
    """The rubric, checked (run_datagen calls this before generating, so a mistake costs no teacher time)."""
    rubric = load_rubric(cfg.rubric, home="datagen", base_dir=base_dir, fields=CURATE_FIELDS,
                         where="datagen.curate.rubric")
    if cfg.threshold > rubric.high:
        raise RecipeError(f"threshold {cfg.threshold} is above the rubric's top score {rubric.high}: every pair "
                          "would be set aside", where="datagen.curate.threshold")
    return rubric


def curate_pairs(records: list[dict[str, Any]], chunks: dict[str, Chunk], cfg: CurateConfig, out: Path, *,
                 base_dir: Path | None, progress: bool = True, console=None) -> tuple[set[str], dict[str, Any]]:
    """Rate `records` (pairs.jsonl rows, in order); write curation.jsonl and set_aside.jsonl into `out`.
    Returns the pair ids set aside and the summary's `curate` section."""
    rubric = load_curate_rubric(cfg, base_dir)
    items = []
    for record in records:
        chunk = chunks[record["source"]["chunk_id"]]
        question = record["instruction"] + (f"\n{record['input']}" if record.get("input") else "")
        items.append(JudgeItem(pair_id(record), {
            "question": question, "answer": record["output"], "source": chunk.text, "title": chunk.title or chunk.file,
            "heading": " / ".join(chunk.heading_path) or chunk.title or chunk.file,
        }))
    outcome = judge_items(items, cfg, rubric, out / CACHE_NAME, where="datagen.curate", progress=progress,
                          console=console, label="curate")
    rows, set_aside_rows, set_aside = [], [], set()
    for record in records:
        verdict = outcome.verdicts[pair_id(record)]
        if not verdict.judged:
            status = "unrated"
        elif verdict.score < cfg.threshold:
            status = "set_aside"
        else:
            status = "kept"
        row = {"pair_id": verdict.id, "status": status, "score": verdict.score, "scores": verdict.scores,
               "reason": verdict.reason if verdict.judged else verdict.failure, "judge_model": cfg.model}
        rows.append(row)
        if status == "set_aside":
            set_aside.add(verdict.id)
            set_aside_rows.append({**record, **row})
    atomic_write_jsonl(out / "curation.jsonl", rows)
    atomic_write_jsonl(out / "set_aside.jsonl", set_aside_rows)
    unrated = sum(r["status"] == "unrated" for r in rows)
    summary = {
        "rated": len(rows) - unrated, "kept": sum(r["status"] == "kept" for r in rows), "set_aside": len(set_aside),
        "unrated": unrated, "cached": outcome.cached, "judged": outcome.judged, "retries": outcome.retries,
        "tokens": outcome.tokens, "errors": outcome.errors, "failed_reasons": outcome.failed_reasons(),
        "threshold": cfg.threshold, "judge_model": cfg.model, "rubric": str(rubric.path),
    }
    return set_aside, summary
