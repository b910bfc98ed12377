from __future__ import annotations

import json
from pathlib import Path

import pytest

from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict

REPO = Path(__file__).resolve().parents[2]
DEMO_QA = REPO / "data" / "coal" / "demo_qa.jsonl"


@pytest.fixture
def alpaca_file(tmp_path: Path) -> Path:
    """The demo coal-safety QA set (alpaca JSONL with provenance fields)."""
    return DEMO_QA


@pytest.fixture
def sharegpt_file(tmp_path: Path) -> Path:
    path = tmp_path / "chats.json"
    chats = [
        {"conversations": [{"from": "human", "value": f"Question {i}?"}, {"from": "gpt", "value": f"Answer {i}."}]}
        for i in range(4)
    ]
    path.write_text(json.dumps(chats, ensure_ascii=False))
    return path


@pytest.fixture
def plan_for(tmp_path: Path, alpaca_file: Path):
    """plan_for(engine, **sections): a plan for the tiny model on the demo data, run folder in tmp."""

    def make(engine: str, **sections):
        data = {
            "name": "t-engines",
            "engine": engine,
            "model": {"base": "embedded:tiny-random-llama", "chat_template": "smollm2"},
            "dataset": {"files": [str(alpaca_file)]},
            "training": {"max_steps": 4, "precision": "fp32", "logging_steps": 1, "save_steps": 2},
        }
        for key, value in sections.items():
            data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
        return make_plan(recipe_from_dict(data), run_dir=tmp_path / "run")

    return make
