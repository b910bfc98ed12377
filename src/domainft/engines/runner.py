"""Launch an engine from its venv with an allowlisted environment, tee its log, show progress."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from ..errors import EngineError
from ..fsutil import atomic_write
from ..plan import Plan
from ..resources import home
from .base import Engine, Launch
from .folder import write_folder
from .loss_plot import write_loss_plot

# Passed through from the parent when set; nothing else is (teacher API keys never reach training logs).
PASS_THROUGH = (
    "HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "NODE_RANK", "NNODES", "NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE",
    "RANK", "LOCAL_RANK", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG", "HF_HOME",
    "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
)
DONE = ".domainft-done"  # in train_dir: training finished for these rendered files


def base_env(work_dir: Path, venv: Path | None = None) -> dict[str, str]:
    """The allowlisted environment every engine subprocess gets."""
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env["PATH"] = f"{venv / 'bin'}:{path}" if venv else path
    env.setdefault("LANG", "C.UTF-8")
    env.setdefault("HOME", str(Path.home()))
    env.setdefault("HF_HOME", str(home() / "hf"))  # the user's HF cache when set, so hub models resolve offline
    cache = work_dir / ".cache"
    env.update({
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "TORCH_EXTENSIONS_DIR": str(home() / "torch_extensions"),
        "TRITON_CACHE_DIR": str(home() / "triton"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "AXOLOTL_DO_NOT_TRACK": "1",  # without it Axolotl hangs at exit when offline
        "WANDB_DISABLED": "true",
        "WANDB_MODE": "disabled",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_launch(launch: Launch, log_path: Path, engine: Engine, *, venv: Path | None = None,
               label: str = "training") -> None:
    """Run `launch` from the engine's venv; full log to log_path; progress bar; EngineError on failure."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .venv import require_engine

    venv = venv or require_engine(engine.name)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**base_env(log_path.parent, venv), **launch.env}
    argv = [str(venv / "bin" / launch.argv[0]), *launch.argv[1:]]
    tail: deque[str] = deque(maxlen=200)
    loss = None
    with open(log_path, "ab") as log, Progress(
        TextColumn(f"[bold]{engine.name} {label}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("{task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
    ) as bar:
        task = bar.add_task(label, total=None, loss="")
        log.write(f"\n$ {' '.join(argv)}\n".encode())
        try:
            proc = subprocess.Popen(argv, cwd=launch.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as exc:
            raise EngineError(f"cannot start {launch.argv[0]}: {exc.strerror}", where=venv) from None
        assert proc.stdout is not None
        try:
            for line in _lines(proc.stdout, log):
                tail.append(line)
                progress = engine.parse_progress(line)
                if progress is None:
                    continue
                if progress.loss is not None:
                    loss = progress.loss
                    bar.update(task, loss=f"loss {loss:.4f}")
                if progress.step is not None:
                    bar.update(task, completed=progress.step, total=progress.total)
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=30)
            raise
    if rc != 0:
        raise EngineError(f"{engine.name} {label} failed (exit {rc}): {error_lines(list(tail))}", where=log_path)


def _lines(stream, log):
    """Yield lines split on \\n and \\r (tqdm redraws with \\r), copying raw bytes to the log."""
    buf = b""
    while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
        log.write(chunk)
        log.flush()
        buf += chunk
        parts = re.split(rb"[\r\n]", buf)
        buf = parts.pop()
        for part in parts:
            if part.strip():
                yield part.decode("utf-8", "replace")
    if buf.strip():
        yield buf.decode("utf-8", "replace")


def error_lines(lines: list[str], n: int = 3) -> str:
    """The engine's last error lines: the exception line and what led to it, without tqdm noise."""
    picked = [ln.strip() for ln in lines if re.search(r"(Error|Exception|error:|Traceback|FAILED)", ln)]
    picked = [ln for ln in picked if not ln.startswith("Traceback")]
    return " | ".join((picked or [ln.strip() for ln in lines])[-n:])[-800:]


def last_checkpoint(train_dir: Path) -> Path | None:
    found = [p for p in Path(train_dir).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def train(plan: Plan) -> Path:
    """Render, check, write, launch; the adapter (or full weights) folder. Resumes from the last checkpoint."""
    from . import get_engine, validate
    from .venv import require_engine

    engine = get_engine(plan.engine)
    if plan.is_embedded:
        from ..models.embedded import materialize

        materialize(plan.recipe.model.base)
    venv = require_engine(engine.name)
    files = validate(plan)
    check_speed_switches(plan)
    write_folder(plan, files, plan.render_dir)
    digest = _training_digest(plan, files)
    done = plan.train_dir / DONE
    if done.exists() and json.loads(done.read_text()).get("render_sha256") == digest:
        return plan.train_dir  # finished before with exactly these files and data
    _set_aside_foreign_checkpoints(plan.train_dir, digest)
    _set_aside_torn_checkpoints(plan.train_dir)
    checkpoint = last_checkpoint(plan.train_dir)
    launch = engine.train_launch(plan)
    if checkpoint is not None:
        # Both engines resume by themselves from output_dir (LLaMA-Factory: overwrite_output_dir false;
        # Axolotl: auto_resume_from_checkpoints); naming it keeps the log honest about it.
        label = f"training (resuming from {checkpoint.name})"
    else:
        label = "training"
    started = time.monotonic()
    run_launch(launch, plan.run_dir / "logs" / f"train-{engine.name}.log", engine, venv=venv, label=label)
    plan.train_dir.mkdir(parents=True, exist_ok=True)
    write_loss_plot(plan.train_dir, title=f"{plan.recipe.name}: {engine.name} training")
    atomic_write(done, json.dumps({"render_sha256": digest, "seconds": round(time.monotonic() - started, 1)}) + "\n")
    return plan.train_dir


def check_speed_switches(plan: Plan) -> None:
    """FlashAttention-2 and Liger need a GPU and their package in the engine's venv. Without them an engine
    falls back silently (LLaMA-Factory) or fails deep in Triton (Axolotl): say so before the launch."""
    from .venv import venv_capabilities, venv_dir

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
    import shutil

    from . import get_engine

    engine = get_engine(plan.engine)
    out_dir = Path(out_dir).resolve()
    write_folder(plan, engine.render(plan), plan.render_dir)
    run_launch(engine.merge_launch(plan, out_dir), plan.run_dir / "logs" / f"merge-{engine.name}.log", engine,
               label="merge")
    nested = out_dir / "merged"  # Axolotl writes into <output_dir>/merged
    if engine.name == "axolotl" and nested.is_dir():
        for item in nested.iterdir():
            shutil.move(str(item), out_dir / item.name)
        nested.rmdir()
    return out_dir


def _training_digest(plan: Plan, files: dict[str, str]) -> str:
    """What a training run depends on: the rendered files and the bytes of the data they point at."""
    import hashlib

    from ..manifest import sha256_file

    data = {str(p): sha256_file(p) for p in [*plan.train_files, *plan.val_files] if p.exists()}
    return hashlib.sha256(json.dumps([files, data], sort_keys=True).encode()).hexdigest()


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
