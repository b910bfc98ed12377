from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import tiny_recipe_data

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
        data = tiny_recipe_data("t-engines", engine, [alpaca_file], max_steps=4, save_steps=2, **sections)
        return make_plan(recipe_from_dict(data), run_dir=tmp_path / "run")

    return make
