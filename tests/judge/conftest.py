from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "datagen"))  # stub_teacher


@pytest.fixture(scope="session")
def llama_judge_server(smollm2_server):
    """The real llama_cpp.server serving SmolLM2 (tests/conftest.py), as the judge."""
    return smollm2_server
