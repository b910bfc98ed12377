"""Training engines. Each engine is a package `domainft/engines/<name>/` (its module with the `ENGINE` class,
`lock.txt` for its venv, `known.json` for what it accepts) plus its templates in `templates/<name>/`, and its name
in `domainft/engine_names.py`. Importing this package imports no engine: `get_engine` loads one module when it
is asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from ..engine_names import NAMES
from ..errors import EngineError, did_you_mean

if TYPE_CHECKING:
    from .base import Engine

__all__ = ["NAMES", "get_engine"]


def get_engine(name: str) -> Engine:
    if name not in NAMES:
        raise EngineError(f"unknown engine '{name}'", where="engine",
                          hint=did_you_mean(name, NAMES) or f"engines: {', '.join(NAMES)}")
    return import_module(f"{__name__}.{name}").ENGINE()
