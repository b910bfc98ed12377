"""The resolved plan: every path and derived value a stage needs, computed once from the recipe.

Pure: building a plan reads no model weights and starts no process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .hub import pinned_path
from .recipe import EMBEDDED_MODELS, Recipe
from .resources import home

# The folder under DOMAINFT_HOME/models each embedded model (recipe.EMBEDDED_MODELS, in that order) is made in.
EMBEDDED_DIRS = dict(zip(EMBEDDED_MODELS, ("smollm2-135m-instruct", "tiny-random-llama"), strict=True))


def embedded_path(name: str) -> Path:
    """Where the embedded model `name` is made (once per machine) as a Hugging Face folder."""
    return home() / "models" / EMBEDDED_DIRS[name]


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    engine: str
    run_dir: Path

    @property
    def recipe_hash(self) -> str:
        return self.recipe.content_hash()

    # ---- model
    @property
    def is_embedded(self) -> bool:
        return self.recipe.model.base.startswith("embedded:")

    @property
    def is_hub(self) -> bool:
        """model.base names a hub repository: neither embedded nor a local path."""
        base = self.recipe.model.base
        return not self.is_embedded and not (self.recipe.resolve(base).exists() or base.startswith((".", "/", "~")))

    @property
    def is_worker_node(self) -> bool:
        """This process is a node other than the first of a multi-node run (NODE_RANK set, not 0): it trains, and
        leaves the pull, eval and export to node 0."""
        return self.recipe.distributed.nnodes > 1 and os.environ.get("NODE_RANK", "0") != "0"

    @property
    def model_record(self) -> Path:
        """The model stage's record of a hub model: hub, id, revision asked for, the commit it resolved to, files."""
        return self.run_dir / "model" / "model.json"

    @property
    def model_path(self) -> str:
        """What the engines load: a local folder (embedded models are materialised there, hub models pulled to their
        pinned snapshot by the model stage), or the hub id while its commit is not yet pinned."""
        base = self.recipe.model.base
        if base in EMBEDDED_DIRS:
            return str(embedded_path(base))
        if self.is_hub:
            pinned = pinned_path(self.recipe.model, self.model_record)
            return str(pinned) if pinned is not None else base
        return str(self.recipe.resolve(base).resolve())

    # ---- stage folders
    @property
    def extract_dir(self) -> Path:
        return self.run_dir / "extract"

    @property
    def datagen_dir(self) -> Path:
        return self.run_dir / "datagen"

    @property
    def render_dir(self) -> Path:
        return self.run_dir / "render" / self.engine

    @property
    def train_dir(self) -> Path:
        """The engine's output_dir: checkpoints and the final adapter (or full weights)."""
        return self.run_dir / "train" / self.engine

    @property
    def eval_dir(self) -> Path:
        return self.run_dir / "eval"

    @property
    def export_dir(self) -> Path:
        return self.run_dir / "export"

    @property
    def pretrain_dir(self) -> Path:
        """Continued pre-training's output (method.pretrain): the adapter (or weights) SFT starts from."""
        return self.run_dir / "pretrain" / self.engine

    @property
    def pretrain_files(self) -> list[Path]:
        """The raw text continued pre-training reads: datagen's pretrain.jsonl (the trained chunks), when asked for."""
        if self.recipe.method.pretrain is None or self.recipe.datagen is None:
            return []
        return [(self.datagen_dir / "pretrain.jsonl").resolve()]

    @property
    def adapter_dir(self) -> Path:
        return self.train_dir

    @property
    def review_dir(self) -> Path:
        return self.run_dir / "review"

    @property
    def review_journal(self) -> Path:
        """People's decisions on the generated pairs (`domainft review`), append-only; datagen applies them."""
        return self.review_dir / "journal.jsonl"

    # ---- data
    @property
    def document_inputs(self) -> list[Path]:
        return [self.recipe.resolve(p) for p in self.recipe.extract.inputs]

    @property
    def train_files(self) -> list[Path]:
        """Hand-written dataset files, then datagen's train split when datagen is on."""
        files = [self.recipe.resolve(p).resolve() for p in self.recipe.dataset.files]
        if self.recipe.datagen is not None:
            files.append((self.datagen_dir / "train.jsonl").resolve())
        return files

    @property
    def prompts(self) -> str:
        """The datagen prompt file: datagen.prompts, else the domain's own (datagen/<domain>.yaml)."""
        datagen = self.recipe.datagen
        return (datagen.prompts if datagen and datagen.prompts else None) or self.recipe.domain

    @property
    def val_files(self) -> list[Path]:
        """The validation set the engine reports eval loss on during training: datagen's val split, when asked for."""
        datagen = self.recipe.datagen
        if datagen is None or not datagen.split.val:
            return []
        return [(self.datagen_dir / "val.jsonl").resolve()]

    @property
    def eval_split_files(self) -> dict[str, Path]:
        """Held-out splits written by datagen (absent without datagen)."""
        if self.recipe.datagen is None:
            return {}
        return {s: (self.datagen_dir / f"{s}.jsonl").resolve() for s in ("val", "test")}

    @property
    def knowledge_file(self) -> Path | None:
        """datagen's knowledge probe: questions held out of every split about passages the run trains on."""
        return (self.datagen_dir / "knowledge.jsonl").resolve() if self.recipe.datagen is not None else None

    @property
    def dataset_name(self) -> str:
        return f"{self.recipe.name}_train".replace("-", "_").replace(".", "_")


def make_plan(recipe: Recipe, *, engine: str | None = None, run_dir: str | Path | None = None) -> Plan:
    engine = engine or recipe.engine
    if run_dir is None:
        # A recipe's run_dir is relative to the recipe file, like its other paths; the default is under the cwd.
        run_dir = recipe.resolve(recipe.run_dir) if recipe.run_dir else Path("runs") / recipe.name
    run_dir = Path(run_dir).expanduser().resolve()
    return Plan(recipe=recipe, engine=engine, run_dir=run_dir)
