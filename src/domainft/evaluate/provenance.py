"""Which eval items ask about text this run trained on, from provenance, per run: never declared by a task.

The run's training text is the chunks whose pairs datagen put in the train split (the passages the pre-training
stage reads too) and the answers of the recipe's own dataset files. An item is on a trained passage when its
chunk is one of those (datagen's items name their chunk), or when its evidence (a hand-written item's quote of
the regulation), else its reference answer, is found in that text. Otherwise it is either in the run's documents
but held out of training, or in no document of this run at all.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datagen.clean import trained_chunk_ids
from ..plan import Plan
from ..run_files import read_jsonl

TRAINED, HELD_OUT, ELSEWHERE = "trained", "held_out", "elsewhere"


def flat(text: str) -> str:
    """NFKC, no whitespace (the corpus' lines end in a literal backslash-n too): how evidence is looked up."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text.replace("\\n", "\n")))


@dataclass
class RunText:
    trained_chunks: set[str]  # chunk ids whose pairs are in the train split
    trained_text: list[str]  # those chunks' text and the dataset files' answers, flattened
    documents: set[str]  # the file names of the run's documents
    by_pair: dict[tuple[str, str], str]  # (question, answer) of a datagen pair -> its chunk id

    def where(self, doc: dict[str, Any]) -> str:
        """trained, held_out (a document of this run, kept out of training) or elsewhere."""
        chunk = doc.get("chunk_id") or self.by_pair.get((doc.get("question", ""), doc.get("answer", "")))
        if chunk:
            return TRAINED if chunk in self.trained_chunks else HELD_OUT
        quote = flat(doc.get("evidence") or doc.get("answer") or "")
        if len(quote) >= 4 and any(quote in text for text in self.trained_text):
            return TRAINED
        return HELD_OUT if Path(str(doc.get("source", ""))).name in self.documents else ELSEWHERE


def run_text(plan: Plan) -> RunText:
    """What this run trains on, read from its datagen folder and dataset files."""
    from ..extract import read_chunks

    chunks_file = plan.extract_dir / "chunks.jsonl"
    chunks = read_chunks(chunks_file) if chunks_file.exists() else []
    trained = trained_chunk_ids(plan.datagen_dir)
    by_pair = {(r["instruction"] + (f"\n{r['input']}" if r.get("input") else ""), r["output"]): r["source"]["chunk_id"]
               for r in read_jsonl(plan.datagen_dir / "pairs.jsonl", missing_ok=True)}
    texts = [flat(c.text) for c in chunks if c.id in trained]
    column = plan.recipe.dataset.column_map().get("response", "output")
    for path in (plan.recipe.resolve(f) for f in plan.recipe.dataset.files):
        rows = read_jsonl(path, missing_ok=True) if path.suffix == ".jsonl" else _read_json(path)
        texts += [flat(str(r[column])) for r in rows if isinstance(r, dict) and r.get(column)]
    return RunText(trained, texts, {Path(c.file).name for c in chunks}, by_pair)


def item_counts(run: RunText, docs: list[dict[str, Any]]) -> dict[str, int]:
    """How many of `docs` are on trained passages, held out, or elsewhere; with n."""
    counts = Counter(run.where(doc) for doc in docs)
    return {"n": len(docs), TRAINED: counts[TRAINED], HELD_OUT: counts[HELD_OUT], ELSEWHERE: counts[ELSEWHERE]}


def task_provenance(plan: Plan, samples: dict[str, Path]) -> dict[str, dict[str, int]]:
    """task -> item counts (see item_counts), from the docs lm-eval logged in a run's samples files."""
    run = run_text(plan)
    out = {}
    for task, path in samples.items():
        docs = [row["doc"] for row in read_jsonl(path, missing_ok=True) if isinstance(row.get("doc"), dict)]
        if docs:
            out[task] = item_counts(run, docs)
    return out


def _read_json(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    return data if isinstance(data, list) else []
