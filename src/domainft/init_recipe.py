"""`domainft init DOCS`: a working recipe for a folder of your own documents.

The recipe is a template (templates/init/recipe.yaml.j2): the embedded model, the offline extractive teacher, the
general domain (each document asked in its own language), eval on the run's own held-out passages and knowledge
probe, and a training short enough for a CPU; its comments say what to change for a real run. The documents are
read once here, as extract will read them, so a folder with nothing readable is refused now.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import yaml

from .errors import DataError, RecipeError, UserError

LANGUAGE_NAMES = {"zh": "Chinese", "en": "English"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")  # recipe.name's pattern


def recipe_name(docs: Path) -> str:
    """The documents folder's name as a recipe name (letters, digits, . _ -), 'my-documents' when none is left."""
    stem = docs.resolve().name if docs.is_dir() else docs.resolve().stem
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:80]
    return slug or "my-documents"


def document_languages(docs: Path) -> tuple[Counter, int, list[str]]:
    """Documents per language, the chunk count, and why unreadable files were skipped: extract's own reading."""
    from .extract import extract_inputs
    from .prompt_files import language_of

    result = extract_inputs([docs])
    if not result.chunks:
        reasons = "; ".join(f"{s.file}: {s.reason}" for s in result.skipped[:3])
        raise DataError(f"no readable documents ({reasons or 'the folder is empty'})", where=docs)
    texts: dict[str, list[str]] = {}
    for chunk in result.chunks:
        texts.setdefault(chunk.file, []).append(chunk.text)
    languages = Counter(language_of("".join(t)) for t in texts.values())
    return languages, len(result.chunks), [f"{s.file} ({s.reason})" for s in result.skipped]


def write_init_recipe(docs: Path, output: Path | None = None, name: str | None = None,
                      lang: str = "auto") -> tuple[Path, str, list[str]]:
    """Write the recipe (never over an existing file); returns its path, its text and notes for the user."""
    from .recipe import recipe_from_dict
    from .templating import render_template

    if not docs.exists():
        raise UserError("no such file or folder", where=docs)
    name = name or recipe_name(docs)
    if not NAME.match(name):
        raise RecipeError(f"'{name}' is not a recipe name (letters, digits, '.', '_', '-'; 80 at most)",
                          where="--name")
    output = output or Path(f"{name}.yaml")
    if output.exists() or output.is_symlink():
        raise UserError("already exists; choose another file with -o, or move this one away", where=output)
    if not output.parent.is_dir():
        raise UserError("no such folder", where=output.parent)
    languages, chunks, skipped = document_languages(docs)
    files = sum(languages.values())
    found = ", ".join(f"{n} {LANGUAGE_NAMES[lang_]}" for lang_, n in languages.most_common())
    docs_rel = os.path.relpath(docs.resolve(), output.resolve().parent)
    prompts = None if lang == "auto" else f"general_{lang}"
    text = render_template(
        "init/recipe.yaml.j2", recipe_name=name, docs=docs_rel, recipe_file=str(output),
        found=f"the {files} document{'s' if files != 1 else ''} in {docs_rel} ({found}; {chunks} chunks)",
        prompts=prompts, lang_note=f"--lang {lang}: every document is asked in {LANGUAGE_NAMES.get(lang, lang)}",
    )
    recipe_from_dict(yaml.safe_load(text), source=output)  # what init writes always validates
    _create(output, text)
    notes = [f"skipped {s}" for s in skipped]
    if lang != "auto" and set(languages) - {lang}:
        notes.append(f"--lang {lang}: the {found} documents are all asked in {LANGUAGE_NAMES[lang]}")
    return output, text, notes


def _create(path: Path, text: str) -> None:
    """Write `path` whole or not at all, and never over a file that appeared meanwhile."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.link(tmp, path)  # fails if the path exists: no overwrite, even in a race
    except FileExistsError:
        raise UserError("already exists; choose another file with -o, or move this one away", where=path) from None
    except OSError as exc:
        raise UserError(f"cannot write ({exc.strerror})", where=path) from None
    finally:
        tmp.unlink(missing_ok=True)
