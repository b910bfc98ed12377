from __future__ import annotations

import socket
from pathlib import Path

import pytest
from helpers import tiny_recipe_data

from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict

REPO = Path(__file__).resolve().parents[2]
DEMO_QA = REPO / "data" / "coal" / "demo_qa.jsonl"  # 24 alpaca pairs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _recipe_data(engine: str = "llamafactory", **sections) -> dict:
    """The tiny random Llama on the demo data; `sections` merge into the top-level sections."""
    return tiny_recipe_data("t-dist", engine, [DEMO_QA], max_steps=3, save_steps=100, **sections)


@pytest.fixture
def recipe_data():
    """recipe_data(engine, **sections): the recipe dict (for writing YAML)."""
    return _recipe_data


@pytest.fixture
def free_port():
    """free_port(): a TCP port free on 127.0.0.1 right now (for the torchrun rendezvous)."""
    return _free_port


@pytest.fixture
def plan_for(tmp_path: Path):
    def make(engine: str = "llamafactory", **sections):
        return make_plan(recipe_from_dict(_recipe_data(engine, **sections)), run_dir=tmp_path / "run")

    return make
