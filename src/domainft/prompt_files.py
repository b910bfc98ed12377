"""Which prompt file datagen asks the teacher with, found without loading it (validate stays fast).

`datagen.prompts` (else the recipe's `domain`) names a file in datagen/ or a path relative to the recipe. A name
may also be a language family: `general` is `general_zh.yaml` and `general_en.yaml`, and each document is asked
in its own language (Chinese documents get the Chinese prompt and template questions, English ones the English).
Only prompt files count as prompts: a rubric beside them (curate_rubric.yaml) is not offered as one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RecipeError, did_you_mean
from .resources import folder, named_file, names_a_path

if TYPE_CHECKING:
    from .recipe import Recipe

LANGUAGES = ("zh", "en")
_INSTRUCTION = re.compile(r"^instruction:", re.M)


def language_of(text: str) -> str:
    """'zh' when more than 30% of the letters are CJK ideographs, else 'en'."""
    letters = [c for c in text if c.isalpha()]
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in letters)
    return "zh" if letters and cjk / len(letters) > 0.3 else "en"


def is_prompt_file(path: Path) -> bool:
    """A prompt file has a top-level `instruction` (a rubric has a `template` and `criteria` instead)."""
    try:
        return bool(_INSTRUCTION.search(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


def prompt_names() -> list[str]:
    """The prompt names datagen/ offers: each prompt file's, and each language family's (general)."""
    names: set[str] = set()
    for path in folder("datagen").glob("*.yaml"):
        if is_prompt_file(path):
            names.add(path.stem)
            stem, _, lang = path.stem.rpartition("_")
            if lang in LANGUAGES and stem:
                names.add(stem)
    return sorted(names)


def prompt_paths(recipe: Recipe) -> dict[str | None, Path]:
    """{None: file} for one prompt file, {language: file} for a family. A one-line RecipeError when there is none:
    naming the key that chose it, and (never a path inside domainft's install) what to set instead."""
    datagen = recipe.datagen
    explicit = datagen.prompts if datagen is not None and datagen.prompts else None
    name = explicit or recipe.domain
    if names_a_path(name):
        path = named_file(name, "datagen", recipe.base_dir)
        if not path.is_file():
            raise RecipeError(f"prompt file {path} not found", where="datagen.prompts")
        return {None: path}
    home = folder("datagen")
    single = home / f"{name}.yaml"
    if single.is_file() and is_prompt_file(single):
        return {None: single}
    family = {lang: home / f"{name}_{lang}.yaml" for lang in LANGUAGES}
    family = {lang: path for lang, path in family.items() if path.is_file() and is_prompt_file(path)}
    if family:
        return family
    names = prompt_names()
    if explicit:
        raise RecipeError(f"no prompt file '{name}'", where="datagen.prompts",
                          hint=did_you_mean(name, names) or f"a prompt YAML of your own (a path relative to the "
                          f"recipe), or one of: {', '.join(names)}")
    raise RecipeError(f"domain '{name}' has no datagen prompts", where="domain",
                      hint=f"set datagen.prompts to a prompt YAML of your own (a path relative to the recipe) or "
                      f"to one of: {', '.join(names)}; or leave domain out for the general prompts")
