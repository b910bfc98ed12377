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


def names_a_path(name_or_path: str) -> bool:
    """A recipe value that is a file path (ends in .yaml/.yml or has a '/'), not a name in one of FOLDERS."""
    return name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path


def named_file(name_or_path: str, home_folder: str, base_dir: Path | None) -> Path:
    """`coal` -> <home_folder>/coal.yaml; a path -> that file (a relative one against `base_dir`, the recipe's
    folder, when given). Whether it exists is the caller's to say, in its own words."""
    if names_a_path(name_or_path):
        path = Path(name_or_path).expanduser()
        return path if path.is_absolute() or base_dir is None else base_dir / path
    return folder(home_folder) / f"{name_or_path}.yaml"


def home() -> Path:
    """Cache for engine venvs, the embedded model, llama.cpp tools. `DOMAINFT_HOME` overrides."""
    env = os.environ.get("DOMAINFT_HOME")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "domainft"
    return base.expanduser()
