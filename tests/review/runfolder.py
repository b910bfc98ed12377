"""A run folder for review tests, made by the real extract and datagen stages, and readers of what it holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import COAL_DOCS

from domainft.pipeline import run_pipeline
from domainft.plan import Plan, make_plan
from domainft.recipe import load_recipe

# A regulation whose title, articles and so chunk and pairs carry HTML and script: the page must show it as text.
HOSTILE_DOC = """危险品<svg onload="window.__pwned='svg'">仓库管理规定
第一条 <script>window.__pwned = "script"</script>储存危险品的仓库必须保持通风，温度不得超过三十度。
第二条 <img src=x onerror="window.__pwned = 'img'">搬运危险品时不得抛掷、碰撞或者拖拉。
第三条 仓库管理人员必须经过培训，考核合格后方可上岗。
"""
HOSTILE_FILE = "hostile.txt"


def write_review_recipe(folder: Path) -> Path:
    """The coal sample regulations plus the hostile one, generated offline (extractive teacher)."""
    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for doc in COAL_DOCS.glob("*.txt"):
        shutil.copy(doc, docs / doc.name)
    (docs / HOSTILE_FILE).write_text(HOSTILE_DOC, encoding="utf-8")
    recipe = folder / "review-test.yaml"
    recipe.write_text("\n".join([
        "name: review-test", "domain: coal",
        "extract: {inputs: [docs], chunk_chars: 600, overlap_chars: 60}",
        "datagen: {provider: extractive, prompts: coal, split: {val: 0.1, test: 0.15, seed: 42}}",
        "run_dir: run"]) + "\n", encoding="utf-8")
    return recipe


def plan_of(recipe: Path, *overrides: str) -> Plan:
    return make_plan(load_recipe(recipe, list(overrides)))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def pairs_by_id(plan: Plan) -> dict[str, dict]:
    return {f"{r['source']['chunk_id']}#{r['source']['index']}": r for r in read_jsonl(plan.datagen_dir / "pairs.jsonl")}


def splits_by_id(plan: Plan) -> dict[str, str | None]:
    return {r["pair_id"]: r["split"] for r in read_jsonl(plan.datagen_dir / "splits.jsonl")}


def alpaca(record: dict) -> dict:
    return {k: record[k] for k in ("instruction", "input", "output")}


def make_review_run(folder: Path) -> tuple[Path, Plan]:
    """(recipe, plan) of a run folder made by the real extract and datagen stages."""
    recipe = write_review_recipe(folder)
    plan = plan_of(recipe)
    run_pipeline(plan, only=["extract", "datagen"])
    return recipe, plan
