"""`validate(plan, deep=True)` runs the engine's own validator in its venv (seconds: it imports the engine).
What every engine must pass is in test_conformance.py; here, what each engine's own rules say."""

from __future__ import annotations

import pytest

from domainft.engines import NAMES
from domainft.render import render_checked as validate
from domainft.engines.venv import ensure_engine
from domainft.errors import EngineError

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("engine", NAMES)
def test_engine_accepts_what_we_render_as_qlora(engine, plan_for):
    ensure_engine(engine)
    validate(plan_for(engine, method={"kind": "qlora"}), deep=True)


@pytest.mark.parametrize("engine,training", [
    ("llamafactory", {"attention": "fa2", "packing": True}),  # liger needs liger-kernel, not in the CPU venv
    ("axolotl", {"attention": "fa2", "liger_kernel": True, "packing": True}),
])
def test_engine_accepts_the_speed_switches(engine, training, plan_for):
    """The engine's validator (with Axolotl's Liger plugin registered) takes what training.attention and
    training.liger_kernel render; the GPU itself is checked only at launch (runner.check_speed_switches)."""
    ensure_engine(engine)
    validate(plan_for(engine, method={"kind": "qlora"}, training=training), deep=True)


@pytest.mark.parametrize("engine,overrides,expected", [
    # Known keys (the static check passes them); the engine's own rules reject the combination.
    ("llamafactory", {"finetuning_type": "full", "quantization_bit": 4}, "Quantization is only compatible"),
    ("axolotl", {"micro_batch_size": "four"}, "micro_batch_size"),
])
def test_engine_rejection_is_one_line(engine, overrides, expected, plan_for):
    ensure_engine(engine)
    with pytest.raises(EngineError) as info:
        validate(plan_for(engine, engine_overrides=overrides), deep=True)
    line = info.value.one_line()
    assert expected in line and "\n" not in line
