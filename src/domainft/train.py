"""The train stage: train (and continued pre-training, and the merge) through an engine: render and check once, write
the folder, launch the engine's CLI from its venv with a progress bar, resume from the last checkpoint."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from . import process
from .chat_formats import deploy_chat_template, instructions
from .engines import get_engine
from .engines.base import Engine, Launch, last_checkpoint
from .engines.folder import write_folder
from .engines.loss_plot import write_loss_plot
from .engines.progress import progress_bar
from .engines.slurm import train_on_slurm
from .engines.venv import require_engine, venv_capabilities, venv_dir
from .errors import EngineError
from .fsutil import atomic_write
from .manifest import sha256_file
from .models import base_folder
from .plan import Plan
from .render import render, render_checked

DONE = ".domainft-done"  # in train_dir: training finished for these rendered files



def run_launch(launch: Launch, log_path: Path, engine: Engine, *, venv: Path | None = None,
               label: str = "training", report_to: str = "none") -> None:
    """Run `launch` from the engine's venv: full log to log_path, a progress bar, EngineError on failure.
    `report_to`: the training logger whose settings (WANDB_*, MLFLOW_*) the child may see."""
    venv = venv or require_engine(engine.name)
    env = {**process.clean_env(Path(log_path).parent, venv, report_to=report_to), **launch.env}
    argv = [str(venv / "bin" / launch.argv[0]), *launch.argv[1:]]
    with progress_bar(engine, label) as bar:
        try:
            done = process.run(argv, env=env, cwd=launch.cwd, log_path=log_path, on_line=bar.line)
        except OSError as exc:
            raise EngineError(f"cannot start {launch.argv[0]}: {exc.strerror}", where=venv) from None
    if done.returncode != 0:
        raise EngineError(f"{engine.name} {label} failed (exit {done.returncode}): {done.error()}", where=log_path)


def train(plan: Plan, files: dict[str, str] | None = None) -> Path:
    """Render, check, write, launch; the adapter (or full weights) folder. Resumes from the last checkpoint. After
    continued pre-training (method.pretrain) it goes on from plan.pretrain_dir, whose files are part of what it
    depends on. `files`: the folder as this run's render stage already rendered and checked it (not rendered again)."""
    engine = get_engine(plan.engine)
    files = _prepare(plan, engine, files)
    data = [*plan.train_files, *plan.val_files, *(_files(plan.pretrain_dir) if plan.recipe.method.pretrain else [])]
    return _run_training(plan, engine, out_dir=plan.train_dir, digest=_training_digest(plan, files, data),
                         launch=engine.train_launch, log_name="train", label="training")


def pretrain(plan: Plan, files: dict[str, str] | None = None) -> Path:
    """Continued pre-training on the raw chunks (method.pretrain) into plan.pretrain_dir, from the rendered folder's
    pre-training config; skipped when done with the same config and text, resumed from its last checkpoint.
    `files`: as train's."""
    engine = get_engine(plan.engine)
    files = _prepare(plan, engine, files)
    config = {rel: text for rel, text in files.items() if "pretrain" in rel}
    return _run_training(plan, engine, out_dir=plan.pretrain_dir, digest=_training_digest(plan, config, plan.pretrain_files),
                         launch=engine.pretrain_launch, log_name="pretrain", label="pre-training")


def _prepare(plan: Plan, engine: Engine, files: dict[str, str] | None) -> dict[str, str]:
    base_folder(plan)  # embedded: made once; hub: pulled once per machine, pinned (the model stage did it already)
    require_engine(engine.name)
    if files is None:
        files = render_checked(plan)
    check_speed_switches(plan)
    write_folder(plan, files, plan.render_dir)
    return files


def _run_training(plan: Plan, engine: Engine, *, out_dir: Path, digest: str, launch, log_name: str,
                  label: str) -> Path:
    done = out_dir / DONE
    if done.exists() and json.loads(done.read_text()).get("render_sha256") == digest:
        return out_dir  # finished before with exactly these files and data
    _set_aside_foreign_checkpoints(out_dir, digest)
    _set_aside_torn_checkpoints(out_dir)
    checkpoint = last_checkpoint(out_dir)
    # LLaMA-Factory (overwrite_output_dir false) and Axolotl (auto_resume_from_checkpoints) resume by themselves
    # from their output folder; others are told the checkpoint. Naming it keeps the log honest about it.
    label = f"{label} (resuming from {checkpoint.name})" if checkpoint is not None else label
    log_path = plan.run_dir / "logs" / f"{log_name}-{engine.name}.log"
    started = time.monotonic()
    if plan.recipe.distributed.launcher == "slurm":
        # Everything before this ran once, here; the job trains on every node; what follows runs here again.

        train_on_slurm(plan, engine, require_engine(engine.name), engine.run_folder_args(plan, resume_from=checkpoint),
                       log_path, label)
    else:
        run_launch(launch(plan, resume_from=checkpoint), log_path, engine, label=label,
                   report_to=plan.recipe.training.report_to)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine.after_train(out_dir)
    deploy_chat_template(plan.recipe, out_dir)  # what chat and eval read beside the adapter
    write_loss_plot(out_dir, title=f"{plan.recipe.name}: {engine.name} {label}")
    atomic_write(done, json.dumps({"render_sha256": digest, "seconds": round(time.monotonic() - started, 1)}) + "\n")
    return out_dir


def check_speed_switches(plan: Plan) -> None:
    """FlashAttention-2 and Liger need a GPU and their package in the engine's venv. Without them an engine
    falls back silently (LLaMA-Factory) or fails deep in Triton (Axolotl): say so before the launch."""
    t = plan.recipe.training
    wanted = [(key, module, package, cpu) for key, on, module, package, cpu in (
        ("training.attention", t.attention == "fa2", "flash_attn", "flash-attn", "auto"),
        ("training.liger_kernel", t.liger_kernel, "liger_kernel", "liger-kernel", "false"),
    ) if on]
    if not wanted:
        return
    found = venv_capabilities(plan.engine)
    for key, module, package, cpu in wanted:
        if not found["cuda"]:
            raise EngineError(f"needs a CUDA GPU, and the {plan.engine} venv sees none", where=key,
                              hint=f"set it to {cpu} to train on the CPU")
        if not found[module]:
            raise EngineError(f"needs the {package} package in the {plan.engine} venv", where=key,
                              hint=f"{venv_dir(plan.engine)}/bin/pip install {package}")


def merge(plan: Plan, out_dir: Path) -> Path:
    """Merge the trained adapter into full HF weights in out_dir (for export)."""
    engine = get_engine(plan.engine)
    out_dir = Path(out_dir).resolve()
    write_folder(plan, render(plan), plan.render_dir)
    run_launch(engine.merge_launch(plan, out_dir), plan.run_dir / "logs" / f"merge-{engine.name}.log", engine,
               label="merge")
    engine.after_merge(out_dir)
    return out_dir


def _training_digest(plan: Plan, files: dict[str, str], data: list[Path]) -> str:
    """What a training run depends on: the rendered files and the bytes of the data (and weights) they point at;
    the system prompt in the user turn changes the data copies, not the rendered files."""
    digests = {str(p): sha256_file(p) for p in data if p.exists()}
    return hashlib.sha256(json.dumps([files, digests, instructions(plan.recipe)], sort_keys=True).encode()).hexdigest()


def _files(folder: Path) -> list[Path]:
    """The weights and configs a stage left directly in its folder (not its checkpoints or markers)."""
    return sorted(p for p in Path(folder).glob("*") if p.is_file() and not p.name.startswith(".")
                  and p.suffix in {".safetensors", ".json", ".bin", ".model"})


STARTED = ".domainft-started"


def _set_aside_foreign_checkpoints(train_dir: Path, digest: str) -> None:
    """Resume only a run started with the same files and data; move any other run's output aside, never delete it."""
    started = train_dir / STARTED
    if train_dir.is_dir() and any(train_dir.iterdir()):
        previous = json.loads(started.read_text()).get("render_sha256") if started.exists() else None
        if previous != digest:
            n = 1
            while (aside := train_dir.with_name(f"{train_dir.name}.stale-{n}")).exists():
                n += 1
            train_dir.rename(aside)
            print(f"training settings or data changed: previous run moved to {aside}", file=sys.stderr)
    train_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(started, json.dumps({"render_sha256": digest}) + "\n")


def _set_aside_torn_checkpoints(train_dir: Path) -> None:
    """A kill in the middle of a save leaves checkpoint-N without a whole trainer_state.json (the trainer writes
    it last); both engines would resume from it and fail on every rerun. Move it aside, never delete it."""
    for checkpoint in Path(train_dir).glob("checkpoint-*"):
        if not checkpoint.name.split("-")[-1].isdigit():
            continue
        try:
            json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            n = 1
            while (aside := checkpoint.with_name(f"{checkpoint.name}.incomplete-{n}")).exists():
                n += 1
            checkpoint.rename(aside)
            print(f"{checkpoint.name} was never finished (killed mid-save): moved to {aside.name}", file=sys.stderr)
