"""Fixtures for the reliability tests; the fault-injecting teacher lives in tests/datagen/stub_teacher.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "datagen"))  # stub_teacher
sys.path.insert(0, str(Path(__file__).parent))  # rel_helpers

from rel_helpers import coal_recipe


@pytest.fixture
def coal_plan(tmp_path):
    """make(run, **datagen) -> a Plan over the demo coal documents, extracted into tmp_path/run."""
    from domainft.extract import extract_for_plan
    from domainft.plan import make_plan
    from domainft.recipe import recipe_from_dict

    def make(run: str = "run", **datagen):
        plan = make_plan(recipe_from_dict(coal_recipe(**datagen)), run_dir=tmp_path / run)
        extract_for_plan(plan)
        return plan

    return make
