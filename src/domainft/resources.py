"""Where the user-vocabulary folders live: the repo checkout, else inside the wheel."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

FOLDERS = ("templates", "recipes", "datagen", "eval_tasks", "data")


@cache
def _root() -> Path:
    packaged = Path(__file__).parent / "_data"
    if (packaged / "templates").is_dir():
        return packaged
    # Editable install or running from a checkout: src/domainft -> repo root.
    return Path(__file__).resolve().parents[2]


def folder(name: str) -> Path:
    """Path of one of FOLDERS (`templates`, `recipes`, ...)."""
    assert name in FOLDERS, name
    return _root() / name


def home() -> Path:
    """Cache for engine venvs, the embedded model, llama.cpp tools. `DOMAINFT_HOME` overrides."""
    env = os.environ.get("DOMAINFT_HOME")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "domainft"
    return base.expanduser()
