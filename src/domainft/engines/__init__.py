"""Training engines, each behind `base.Engine`, each run from its own venv."""

from __future__ import annotations

from ..errors import EngineError, did_you_mean
from ..plan import Plan
from .axolotl import Axolotl
from .base import Engine, Launch, Progress
from .llamafactory import LlamaFactory
from .runner import merge, run_launch, train
from .venv import (
    engine_status,
    engine_versions,
    ensure_engine,
    require_engine,
    venv_bin,
)

ENGINES: dict[str, type[Engine]] = {"llamafactory": LlamaFactory, "axolotl": Axolotl}

__all__ = ["ENGINES", "Engine", "Launch", "Progress", "engine_status", "engine_versions", "ensure_engine",
           "get_engine", "merge", "require_engine", "run_launch", "train", "validate", "venv_bin"]


def get_engine(name: str) -> Engine:
    if name not in ENGINES:
        raise EngineError(f"unknown engine '{name}'", where="engine", hint=did_you_mean(name, ENGINES))
    return ENGINES[name]()


def validate(plan: Plan, deep: bool = False) -> dict[str, str]:
    """Render and check the plan's engine files; returns them. `deep` also runs the engine's own
    validator in its venv (seconds: it imports the engine). Raises a one-line UserError."""
    from .checks import check_eval_set, check_model, deep_check

    check_model(plan)
    check_eval_set(plan)
    engine = get_engine(plan.engine)
    files = engine.render(plan)
    engine.check(plan, files)
    if deep:
        deep_check(engine.name, engine.config(files), engine.config_file)
    return files
