"""The rendered folder on disk: where the training data lands in it, the copies made, and the write. What its files
say (the engine's configs, the README with the commands) is domainft.render's.

Every path inside is relative to the folder, so it can be copied to another machine and trained there with the
engine's own CLI, run from inside the folder. The base model is the one path that points outside; the folder's
README says which key holds it. domainft's own train stage runs the same files from the same folder and only
moves the engine's output into the run folder with command-line overrides (`output_launch_args`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .. import templating as R
from ..chat_formats import instructions
from ..errors import DataError
from ..fsutil import atomic_write
from .records import fold_record, sample_records

if TYPE_CHECKING:  # annotations only: `validate` refuses bad engine keys before pydantic loads
    from ..plan import Plan

DATA = "data"  # training files, copied in
OUTPUT = "output"  # where the engine writes checkpoints and the adapter when run by hand
MERGED = "merged"  # where a by-hand merge writes full weights
README = "README.md"
PRETRAIN_OUTPUT = "output-pretrain"  # where continued pre-training (method.pretrain) writes, run by hand


def data_layout(plan: Plan) -> tuple[dict[str, Path], dict[str, Path]]:
    """Where the training files and the validation files land inside the folder: relative path -> source."""
    train: dict[str, Path] = {}
    val: dict[str, Path] = {}
    for i, (part, source) in enumerate([*((train, p) for p in plan.train_files), *((val, p) for p in plan.val_files)]):
        rel = f"{DATA}/{source.name}"
        if rel in train or rel in val:  # two files of one name (e.g. two train.jsonl): keep both
            rel = f"{DATA}/{i}-{source.name}"
        part[rel] = source
    return train, val


def pretrain_layout(plan: Plan) -> dict[str, Path]:
    """Where continued pre-training's raw text lands inside the folder (method.pretrain): relative path -> source."""
    return {f"{DATA}/{source.name}": source for source in plan.pretrain_files}


def data_copies(plan: Plan) -> dict[str, Path]:
    """Every data file copied into the folder (training, validation, pre-training): relative path -> source."""
    train, val = data_layout(plan)
    return {**train, **val, **pretrain_layout(plan)}


def data_bytes(plan: Plan, source: Path) -> bytes:
    """What a data file's copy in the folder holds: the file itself, or, when the recipe puts its system prompt in
    the user turn (model.system_prompt_in user), each record with that prompt opening its first user turn, as every
    engine then trains and every deployment prompts (chat_formats.user_turn)."""
    from . import get_engine

    text, prefix = instructions(plan.recipe), get_engine(plan.engine).answer_prefix(plan)
    if not text and not prefix:
        return source.read_bytes()

    ds = plan.recipe.dataset
    rows = [fold_record(rec, text, ds.format, ds.column_map(), ds.tag_map(), prefix)
            for rec in sample_records(source, limit=None)]
    if source.suffix == ".json":
        return (json.dumps(rows, ensure_ascii=False, indent=1) + "\n").encode()
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def deepspeed_rel(plan: Plan) -> str | None:
    stage = plan.recipe.distributed.deepspeed
    return f"ds_zero{stage}.json" if stage else None


def write_folder(plan: Plan, files: dict[str, str], dest: Path) -> list[Path]:
    """Write the rendered files and copy the training data into dest, each only when its bytes change.

    Refuses, before writing anything, when a training or validation file does not exist yet: a folder never
    points at a missing file. Returns the paths written.
    """
    copies = data_copies(plan)
    for rel, source in copies.items():
        if not source.is_file():
            raise DataError("this data file does not exist yet, so the rendered folder would point at nothing",
                            where=source, hint=_maker(plan, source))
    written = R.write_tree(files, dest)
    root = Path(dest).resolve()
    for rel, source in sorted(copies.items()):
        target = root / rel
        data = data_bytes(plan, source)
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            continue
        atomic_write(target, data)
        written.append(target)
    return written


def folder_files(plan: Plan, files: dict[str, str], dest: Path) -> list[Path]:
    """Every path write_folder puts under dest."""
    return [Path(dest) / rel for rel in sorted([*files, *data_copies(plan)])]


def _maker(plan: Plan, source: Path) -> str:
    recipe = plan.recipe.source or "RECIPE"
    if source.parent == plan.datagen_dir.resolve():
        return f"make it with: domainft datagen {recipe}"
    return "fix dataset.files in the recipe"
