"""The small interface every training engine implements.

An engine module renders its files from the plan (pure), checks them statically (fast, no engine
import), and says how to launch its CLI from its own venv. It never imports the engine itself:
LLaMA-Factory and Axolotl pin conflicting dependencies and each lives in a venv of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..plan import Plan
from .folder import OUTPUT


@dataclass(frozen=True)
class Progress:
    """One progress update parsed from an engine's log line."""

    step: int | None = None
    total: int | None = None
    loss: float | None = None


@dataclass(frozen=True)
class Launch:
    """A subprocess to run from the engine's venv: argv[0] is resolved inside the venv's bin/."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


class Engine(ABC):
    name: ClassVar[str]
    #: The file in the rendered folder a person passes to the engine's CLI by hand.
    config_file: ClassVar[str]

    @abstractmethod
    def render(self, plan: Plan) -> dict[str, str]:
        """Pure: relative path -> file text, for everything the engine reads."""

    @abstractmethod
    def check(self, plan: Plan, files: dict[str, str]) -> None:
        """Static checks in-process (no torch, well under a second); raise UserError on the first problem."""

    @abstractmethod
    def train_launch(self, plan: Plan) -> Launch:
        """How to train from the rendered folder: the by-hand command, with the output moved to plan.train_dir."""

    @abstractmethod
    def merge_launch(self, plan: Plan, out_dir: Path) -> Launch:
        """How to merge the adapter in plan.train_dir into full HF weights in out_dir."""

    @abstractmethod
    def hand_command(self) -> str:
        """The command a person runs from inside the rendered folder, with the engine on PATH, to train."""

    @abstractmethod
    def parse_progress(self, line: str) -> Progress | None:
        """Progress from one line of the engine's output, or None."""


def training_values(plan: Plan) -> dict[str, object]:
    """The optimizer and schedule values both engines take under the same meaning (names differ per engine
    only where the engine spells them differently; those stay in the engine module)."""
    t = plan.recipe.training
    return {
        "output_dir": OUTPUT,
        "logging_steps": t.logging_steps,
        "save_steps": t.save_steps,
        "grad_accum": t.grad_accum,
        "learning_rate": float(t.learning_rate),
        "weight_decay": float(t.weight_decay),
        "eval_steps": t.eval_steps or t.save_steps,
        "epochs": float(t.epochs),
        "max_steps": t.max_steps,
        "scheduler": t.scheduler,
        "warmup_ratio": float(t.warmup_ratio),
        "seed": t.seed,
        "bf16": t.precision == "bf16",
        "fp16": t.precision == "fp16",
    }
