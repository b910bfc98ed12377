"""`domainft doctor` reports every component, and what the GPU-only speed switches would find per engine."""

from __future__ import annotations

import pytest
from helpers import run_cli

from domainft.engines import NAMES as ENGINES
from domainft.engines.venv import is_ready


def test_doctor_lists_components_and_each_engines_speed_switches():
    result = run_cli("doctor", timeout=300)
    assert result.code == 0, result.stderr
    for row in ("python", "torch", "lm-eval", "llama-cpp-python", "gpu", "llama.cpp converter", "embedded model"):
        assert f" {row} " in result.stdout, row
    ready = [name for name in ENGINES if is_ready(name)]
    if not ready:
        pytest.skip("no engine venv installed")
    for name in ready:
        line = next(ln for ln in result.stdout.splitlines() if f"{name} speed" in ln)
        assert "CUDA" in line and "flash-attn" in line and "liger-kernel" in line, line
