"""The small interface every training engine implements.

An engine module renders its files from the plan (pure), checks them statically (fast, no engine
import), and says how to launch its CLI from its own venv. It never imports the engine itself:
the engines pin conflicting dependencies and each lives in a venv of its own.
"""

from __future__ import annotations

import json
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..templating import template_path
from .venv import Spec

if TYPE_CHECKING:  # annotations only: `validate` refuses bad engine keys before pydantic loads
    from ..plan import Plan


@dataclass(frozen=True)
class Progress:
    """One progress update parsed from an engine's log line."""

    step: int | None = None
    total: int | None = None
    loss: float | None = None


@dataclass(frozen=True)
class Readme:
    """What the rendered folder's README.md says of one engine (render.folder_readme writes the rest)."""

    #: Where the base model's path is set, e.g. "`model` in `sft.yaml`".
    model_key: str
    #: What must be installed, e.g. "ms-swift 4.6.0 installed (`swift` on PATH)".
    install: str
    #: (what it does, the commands), in order.
    steps: list[tuple[str, list[str]]]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Launch:
    """A subprocess to run from the engine's venv: argv[0] is resolved inside the venv's bin/."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


class Engine(ABC):
    """One training engine. Its package `domainft/engines/<name>/` holds this class (as ENGINE), `lock.txt`
    (its venv's pins) and `known.json` (the keys and templates it accepts, snapshotted from the engine itself);
    its Jinja templates live in `templates/<name>/`. The registry `domainft.engine_names` names it."""

    name: ClassVar[str]
    #: How people write the engine's name.
    label: ClassVar[str]
    #: Its distribution on the package registry (its version goes into the manifest).
    package: ClassVar[str] = ""
    #: The file in the rendered folder a person passes to the engine's CLI by hand.
    config_file: ClassVar[str]
    #: How its venv is built besides lock.txt (part of the venv's hash).
    venv: ClassVar[Spec]
    #: Config keys that say where the engine writes: domainft keeps those inside the run folder.
    run_folder_keys: ClassVar[tuple[str, ...]]
    #: Python run in the engine's venv with the config as `cfg` (a dict): raises what the engine would reject.
    deep_check_code: ClassVar[str]
    #: What each of its own files in the rendered folder is, for the folder's README (file name -> description).
    descriptions: ClassVar[dict[str, str]] = {}
    #: The recipe key that turns each of its plugins on (plugin -> "key: value"), for the hint when a plugin's option
    #: is set without it.
    plugin_switches: ClassVar[dict[str, str]] = {}
    #: Files under templates/ its rendering reads as data besides the Jinja templates (render-stage inputs): every
    #: engine writes the system turn from the shared alpaca formats (chat_formats.system_turn).
    template_data: ClassVar[tuple[str, ...]] = ("_shared/alpaca_formats.yaml",)
    def template_dir(self) -> Path:
        """Its templates' folder: templates/<name>/, or the one an outside engine was registered with
        (engine_names.register); Jinja loads them as `<name>/...`."""
        return template_path(self.name)

    @abstractmethod
    def config_files(self, plan: Plan) -> dict[str, str]:
        """Pure: relative path -> file text, for the engine's own files (its configs). The folder around them (the
        DeepSpeed JSON, launch.sbatch, README.md) is domainft.render's, which calls this."""

    @abstractmethod
    def readme(self, plan: Plan) -> Readme:
        """What the folder's README says of this engine: where the model is set, what to install, the commands."""

    @abstractmethod
    def check_recipe(self, plan: Plan) -> None:
        """Static checks of what the recipe asks of this engine (override keys, templates), before rendering:
        in-process, no torch; raise UserError on the first problem."""

    @abstractmethod
    def check_files(self, plan: Plan, files: dict[str, str]) -> None:
        """Static checks of the rendered files (every key one the engine knows)."""

    @abstractmethod
    def config(self, files: dict[str, str]) -> dict[str, Any]:
        """The training config as the engine's own validator takes it."""

    @abstractmethod
    def train_launch(self, plan: Plan, resume_from: Path | None = None) -> Launch:
        """How to train from the rendered folder: the by-hand command, with the output moved to plan.train_dir.
        `resume_from`: the newest complete checkpoint there, for engines that do not resume by themselves."""

    def pretrain_launch(self, plan: Plan, resume_from: Path | None = None) -> Launch:
        """How to run continued pre-training (method.pretrain) from the rendered folder, into plan.pretrain_dir."""
        raise NotImplementedError(f"{self.label} has no continued pre-training here")

    @abstractmethod
    def run_folder_args(self, plan: Plan, resume_from: Path | None = None) -> list[str]:
        """What domainft adds to the by-hand train command so the engine writes into plan.train_dir (and resumes
        from `resume_from`): train_launch's, and what `domainft run` passes to launch.sbatch."""

    @abstractmethod
    def cluster_command(self, plan: Plan) -> str:
        """The shell line each Slurm task runs from inside the rendered folder to train through the engine's own
        multi-node launcher. launch.sbatch exports NNODES, NODE_RANK, NPROC_PER_NODE, MASTER_ADDR and MASTER_PORT
        from the job; `"$@"` stands where run_folder_args go."""

    def after_train(self, train_dir: Path) -> None:
        """Leave the final adapter (or full weights) directly in train_dir, when the engine keeps it elsewhere."""

    @abstractmethod
    def merge_launch(self, plan: Plan, out_dir: Path) -> Launch:
        """How to merge the adapter in plan.train_dir into full HF weights in out_dir."""

    def after_merge(self, out_dir: Path) -> None:
        """Move what merge_launch wrote into out_dir itself, when the engine nests it."""

    @abstractmethod
    def hand_command(self) -> str:
        """The command a person runs from inside the rendered folder, with the engine on PATH, to train."""

    @abstractmethod
    def parse_progress(self, line: str) -> Progress | None:
        """Progress from one line of the engine's output, or None."""

    @abstractmethod
    def chat_templates(self) -> dict[str, list[str]]:
        """Every chat template this engine can write -> the text it writes around turns."""

    def template_name(self, plan: Plan) -> str:
        """The engine's template for this recipe."""
        return plan.recipe.model.chat_template

    def written_template_text(self, plan: Plan) -> list[str]:
        """The turn text this engine itself writes into training examples for this recipe ([] when the tokenizer's
        own chat template formats them)."""
        return self.chat_templates().get(self.template_name(plan), [])

    def answer_prefix(self, plan: Plan) -> str:
        """Text the folder's data copies put before each answer, where this engine's template does not write what the
        other engines and every deployment put there ("" for none)."""
        return ""

    def known(self) -> dict[str, Any]:
        """The snapshot of what this engine accepts (known.json): version, config_keys, templates."""
        return _known(self.name)


def last_checkpoint(train_dir: Path) -> Path | None:
    """The highest-numbered `checkpoint-N` folder in train_dir, or None."""
    found = [p for p in Path(train_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def move_up(nested: Path) -> None:
    """Move what an engine wrote into `nested` up into its parent folder (engines that merge into a subfolder)."""
    if nested.is_dir():
        for item in nested.iterdir():
            shutil.move(str(item), nested.parent / item.name)
        nested.rmdir()


@cache
def _known(name: str) -> dict[str, Any]:
    return json.loads((Path(__file__).parent / name / "known.json").read_text(encoding="utf-8"))
