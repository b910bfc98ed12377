from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # stub_teacher

from helpers import COAL_DOCS

from domainft.extract import extract_for_plan
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def coal_plan(tmp_path):
    """make(**datagen) -> a Plan over the demo coal documents, extracted into tmp_path/run."""

    def make(run: str = "run", **datagen):
        recipe = recipe_from_dict({
            "name": "coal-test", "domain": "coal",
            "extract": {"inputs": [str(COAL_DOCS)], "chunk_chars": 600, "overlap_chars": 60},
            "datagen": {"provider": "extractive", "prompts": "coal", **datagen},
        })
        plan = make_plan(recipe, run_dir=tmp_path / run)
        extract_for_plan(plan)
        return plan

    return make
