"""Train through Slurm: submit the rendered launch.sbatch, follow the job, cancel it when domainft is stopped.

Every Slurm command goes through process.py. While `squeue` lists the job it is waited on, with progress read
from node 0's log in the rendered folder (the engine's own parser). Once it is gone, how it ended comes from
`scontrol show job` (kept for the cluster's MinJobAge), else `sacct` (needs an accounting daemon), else the exit
code file launch.sbatch writes. A failed job is one line naming the node that failed first, after that node's
last lines; Ctrl-C or SIGTERM cancels the job (`scancel`) and waits until Slurm has ended it.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import process
from ..errors import EngineError
from .cluster import LOGS, SCRIPT
from .progress import ProgressBar, progress_bar

if TYPE_CHECKING:
    from ..plan import Plan
    from .base import Engine

POLL_S = 2.0  # between two squeue calls
CANCEL_WAIT_S = 120.0  # for Slurm to end a cancelled job (its KillWait, then SIGKILL)
SHOWN_LINES = 15  # of the failing node's log
# sbatch's own settings and where the cluster is, besides clean_env's allowlist.
SLURM_ENV = ("SLURM_CONF", "SBATCH_")
# Job states in which the job may still run (squeue's long names).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
          "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED"}
# How a job that ended without a failing node ended, in words.
ENDED = {"TIMEOUT": "ran past its time limit (distributed.slurm.time_limit)",
         "CANCELLED": "was cancelled (scancel, or the cluster's administrators)",
         "NODE_FAIL": "lost a node", "PREEMPTED": "was preempted", "DEADLINE": "missed its deadline",
         "BOOT_FAIL": "could not boot its nodes"}


@dataclass(frozen=True)
class JobEnd:
    state: str  # Slurm's: COMPLETED, FAILED, CANCELLED, TIMEOUT, ... (UNKNOWN when nothing says)
    exit_code: int | None = None


def require_sbatch(env: dict[str, str]) -> None:
    if shutil.which("sbatch", path=env.get("PATH")) is None:
        raise EngineError("distributed.launcher is slurm, but there is no sbatch on this machine's PATH",
                          where="distributed.launcher",
                          hint="run on the cluster's login node, or set distributed.launcher: local")


def submit_env(log_dir: Path, venv: Path) -> dict[str, str]:
    """The job's environment: clean_env with the engine's venv first on PATH (sbatch exports it to every task)."""
    return process.clean_env(log_dir, venv, also=SLURM_ENV)


def train_on_slurm(plan: Plan, engine: Engine, venv: Path, args: list[str], log_path: Path, label: str) -> None:
    """Submit launch.sbatch from the rendered folder with the run-folder arguments `args`, follow the job to its
    end; EngineError (one line) unless it completed."""
    env = submit_env(log_path.parent, venv)
    require_sbatch(env)
    folder = plan.render_dir
    (folder / LOGS).mkdir(parents=True, exist_ok=True)  # Slurm opens the batch step's output file before it runs
    job = submit(folder, args, env, log_path, plan)
    try:
        with process.sigterm_raises(), progress_bar(engine, label) as bar:
            end = follow(job, folder, env, bar)
    except BaseException:
        cancel(job, env, log_path)
        raise
    _note(log_path, f"slurm job {job} ended {end.state} (exit {end.exit_code}); node logs in {folder / LOGS / job}")
    if end.state != "COMPLETED":
        raise failure(job, end, folder)


def submit(folder: Path, args: list[str], env: dict[str, str], log_path: Path, plan: Plan) -> str:
    """sbatch from inside the folder; the job id. sbatch's refusal is one line."""
    argv = ["sbatch", "--parsable", f"--output={LOGS}/slurm-%j.out", SCRIPT, *args]
    try:
        done = process.run(argv, env=env, cwd=folder, log_path=log_path)
    except OSError as exc:
        raise EngineError(f"cannot start sbatch: {exc.strerror}", where="distributed.launcher") from None
    ids = [line.strip() for line in done.tail if re.fullmatch(r"\d+(;\S+)?", line.strip())]
    if done.returncode == 0 and ids:
        return ids[-1].split(";")[0]
    said = [re.sub(r"^sbatch: (error|fatal): ", "", line.strip()) for line in done.tail if "error" in line or
            "fatal" in line] or [line.strip() for line in done.tail if line.strip()] or ["no output"]
    message = " | ".join(said[-2:]).removeprefix("Batch job submission failed: ")
    if "partition" in message.lower():
        partition = plan.recipe.distributed.slurm.partition
        raise EngineError(f"sbatch refused the job: {message}", where="distributed.slurm.partition",
                          hint=f"'{partition}' is not one of this cluster's; `sinfo -s` lists them" if partition
                          else "the cluster has no default partition: set one")
    raise EngineError(f"sbatch refused the job: {message}", where=folder / SCRIPT)


def follow(job: str, folder: Path, env: dict[str, str], bar: ProgressBar) -> JobEnd:
    """Wait while squeue lists the job, feeding node 0's new log lines to the bar; then how it ended."""
    node0 = _Tail(folder / LOGS / job / "node-0.log")
    shown = None
    while True:
        state, reason = queue_state(job, env)
        for line in node0.lines():
            bar.line(line)
        if state not in ACTIVE:
            break
        if (state, reason) != shown:
            shown = (state, reason)
            waiting = f" ({reason})" if reason and reason != "None" else ""
            bar.describe(f"slurm job {job} {state.lower()}{waiting}")
        time.sleep(POLL_S)
    return job_end(job, folder, env)


def queue_state(job: str, env: dict[str, str]) -> tuple[str | None, str]:
    """(state, reason) while squeue lists the job; (None, '') once it does not."""
    found = _ask(["squeue", "--noheader", f"--jobs={job}", "--format=%T|%r"], env)
    for line in found or []:
        state, _, reason = line.strip().partition("|")
        if re.fullmatch(r"[A-Z_]+", state):
            return state, reason
    return None, ""


def job_end(job: str, folder: Path, env: dict[str, str]) -> JobEnd:
    """How the job ended: scontrol, else sacct, else the exit code launch.sbatch wrote."""
    shown = _ask(["scontrol", "--oneliner", "show", "job", job], env)
    fields = dict(re.findall(r"(\w+)=(\S*)", " ".join(shown or [])))
    if "JobState" in fields:
        return JobEnd(fields["JobState"], _exit_code(fields.get("ExitCode", "")))
    accounted = _ask(["sacct", "--noheader", "--allocations", "--parsable2", f"--jobs={job}",
                      "--format=State,ExitCode"], env)
    for line in accounted or []:
        state, _, code = line.strip().partition("|")
        if state:
            return JobEnd(state.split()[0], _exit_code(code))
    written = folder / LOGS / job / "exit"
    if written.is_file() and written.read_text().strip().isdigit():
        code = int(written.read_text())
        return JobEnd("COMPLETED" if code == 0 else "FAILED", code)
    return JobEnd("UNKNOWN")


def cancel(job: str, env: dict[str, str], log_path: Path) -> None:
    """scancel, then wait (bounded) until Slurm no longer runs any part of the job."""
    try:
        process.run(["scancel", job], env=env, log_path=log_path)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while queue_state(job, env)[0] in ACTIVE and time.monotonic() < deadline:
            time.sleep(1)
    except OSError:
        pass
    print(f"cancelled slurm job {job}", file=sys.stderr)


def failure(job: str, end: JobEnd, folder: Path) -> EngineError:
    """One line for a job that did not complete: the first node to fail and its error, after its last lines."""
    logs = folder / LOGS / job
    node = None if end.state in ENDED else first_failed_node(logs)
    if node is not None:
        rank, code = node
        log = logs / f"node-{rank}.log"
        lines = _last_lines(log)
        for line in _without_frames(lines)[-SHOWN_LINES:]:
            print(f"  node {rank} | {line}", file=sys.stderr)
        return EngineError(f"slurm job {job} failed on node {rank} (exit {code}): {process.error_lines(lines)}",
                           where=log)
    out = folder / LOGS / f"slurm-{job}.out"
    how = ENDED.get(end.state, f"ended {end.state} (exit {end.exit_code})")
    lines = _last_lines(out)
    return EngineError(f"slurm job {job} {how}" + (f": {process.error_lines(lines)}" if lines else ""), where=out)


def first_failed_node(logs: Path) -> tuple[int, int] | None:
    """(rank, exit code) of the node whose training exited non-zero first; nodes Slurm then killed wrote nothing
    or wrote later."""
    failed = []
    for path in logs.glob("node-*.exit"):
        text = path.read_text().strip()
        rank = path.stem.removeprefix("node-")
        if text.isdigit() and int(text) != 0 and rank.isdigit():
            failed.append((path.stat().st_mtime, int(rank), int(text)))
    return min(failed)[1:] if failed else None


def _ask(argv: list[str], env: dict[str, str]) -> list[str] | None:
    """A Slurm query's output lines, or None when it failed or is not installed."""
    try:
        done = process.run(argv, env=env, log_path=None, timeout=60)
    except OSError:
        return None
    return done.tail if done.returncode == 0 else None


def _exit_code(text: str) -> int | None:
    code = text.split(":")[0]
    return int(code) if code.isdigit() else None


def _last_lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes()[-32768:].decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def _without_frames(lines: list[str]) -> list[str]:
    """A log's lines less Python's traceback frames (the file, the code line, its ^ markers): what failed, not where
    in the engine's code; the whole log is one path away."""
    kept, in_frame = [], False
    for line in lines:
        if line.startswith("Traceback (most recent call last)") or line.lstrip().startswith('File "'):
            in_frame = True
            continue
        if in_frame and (line.startswith("    ") or not line.strip(" ^~")):
            continue
        in_frame = False
        kept.append(line)
    return kept


def _note(log_path: Path, text: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(text + "\n")


class _Tail:
    """The lines a growing file gained since the last call (split on \\n and tqdm's \\r)."""

    def __init__(self, path: Path):
        self.path, self.offset, self.rest = path, 0, b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return []
        self.offset += len(chunk)
        *parts, self.rest = re.split(rb"[\r\n]", self.rest + chunk)
        return [p.decode("utf-8", "replace") for p in parts if p.strip()]
