"""Shared fixtures: a CLI runner and the real models tests run against."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_cli


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer: real code paths at seconds per step."""
    from domainft.models.embedded import materialize

    return materialize("embedded:tiny-random-llama")


@pytest.fixture(scope="session")
def smollm2_model() -> Path:
    from domainft.models.embedded import materialize

    return materialize("embedded:smollm2")
