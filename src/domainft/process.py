"""The one way domainft starts a subprocess: engines, lm-eval, the GGUF converter and quantizer, pip, servers.

Every child gets an allowlisted environment (teacher API keys never reach an engine's log), its whole output
teed to a log file, each line (tqdm redraws split on \\r too) handed to a progress callback, and the last lines
kept for a one-line error. Each child leads its own process group: Ctrl-C, SIGTERM or an exception in domainft
ends the whole group (torchrun's workers, a server's threads), and a child whose parent dies gets SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Terminated
from .resources import home

# Passed through from the parent when set; nothing else is.
PASS_THROUGH = (
    "HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
    "OMP_NUM_THREADS", "NODE_RANK", "NNODES", "NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE",
    "RANK", "LOCAL_RANK", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_DEBUG", "HF_HOME",
    "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
)
# pip also needs its own settings and the way to the package index (proxies, certificates).
PROXIES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
PIP_PASS_THROUGH = ("PIP_", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", *PROXIES)
GRACE_S = 10  # between SIGTERM and SIGKILL for a process group
# A training run's online logger (training.report_to) reads its settings and key from these, and reaches its server
# through the proxies: passed to the engine only when the recipe opts in. HF_TOKEN, HF_ENDPOINT and MODELSCOPE_*
# never are: models are pulled by the wrapper (hub.py), and engines run offline.
TRACKER_ENV = {"wandb": ("WANDB_", *PROXIES), "mlflow": ("MLFLOW_", *PROXIES)}


def clean_env(work_dir: Path, venv: Path | None = None, *, also: tuple[str, ...] = (),
              report_to: str = "none") -> dict[str, str]:
    """The allowlisted environment for a child: PASS_THROUGH (plus `also`: names, or prefixes ending in `_`, and
    what the `report_to` logger reads), the venv's bin first on PATH, offline Hugging Face, and caches in writable
    places."""
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    for wanted in (*also, *TRACKER_ENV.get(report_to, ())):
        env.update({k: v for k, v in os.environ.items() if k == wanted or (wanted.endswith("_") and k.startswith(wanted))})
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env["PATH"] = f"{venv / 'bin'}:{path}" if venv else path
    env.setdefault("LANG", "C.UTF-8")
    env.setdefault("HOME", str(Path.home()))
    env.setdefault("HF_HOME", str(home() / "hf"))  # the user's HF cache when set, so hub models resolve offline
    env.update({
        "MPLCONFIGDIR": str(Path(work_dir) / ".cache" / "matplotlib"),
        "TORCH_EXTENSIONS_DIR": str(home() / "torch_extensions"),
        "TRITON_CACHE_DIR": str(home() / "triton"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "AXOLOTL_DO_NOT_TRACK": "1",  # without it Axolotl hangs at exit when offline
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    })
    if report_to != "wandb":
        env.update({"WANDB_DISABLED": "true", "WANDB_MODE": "disabled"})
    return env


@dataclass
class Finished:
    returncode: int
    tail: list[str] = field(default_factory=list)

    def error(self, n: int = 3) -> str:
        return error_lines(self.tail, n)


def error_lines(lines: list[str], n: int = 3) -> str:
    """The last error lines of a child's output: the exception line and what led to it, without tqdm noise."""
    picked = [ln.strip() for ln in lines if re.search(r"(Error|Exception|error:|Traceback|FAILED)", ln)]
    picked = [ln for ln in picked if not ln.startswith(("Traceback", "File "))]
    return " | ".join((picked or [ln.strip() for ln in lines if ln.strip()] or ["no output"])[-n:])[-800:]


def run(argv: list[str], *, env: dict[str, str], log_path: Path | None, cwd: Path | None = None,
        on_line: Callable[[str], None] | None = None, input_text: str | None = None, timeout: float | None = None,
        tail: int = 200) -> Finished:
    """Run argv to the end: output to log_path (appended, after a `$ argv` line) and, line by line, to on_line.
    Raises OSError when it cannot start; a non-zero exit is the caller's to judge (`Finished.error()`)."""
    last: deque[str] = deque(maxlen=tail)
    with _log(log_path, argv) as log, started(argv, env=env, cwd=cwd, stdin=input_text is not None) as proc:
        if input_text is not None:
            assert proc.stdin is not None
            proc.stdin.write(input_text.encode())
            proc.stdin.close()
        timer = threading.Timer(timeout, end_group, (proc,)) if timeout else None
        if timer:
            timer.start()
        try:
            assert proc.stdout is not None
            for line in _lines(proc.stdout, log):
                last.append(line)
                if on_line is not None:
                    on_line(line)
            returncode = proc.wait()
        finally:
            if timer:
                timer.cancel()
    return Finished(returncode, list(last))


@contextmanager
def started(argv: list[str], *, env: dict[str, str], cwd: Path | None = None, stdin: bool = False,
            output: int | None = subprocess.PIPE) -> Iterator[subprocess.Popen]:
    """A child in its own process group, ended with its group when the block is left early (an exception,
    Ctrl-C, or SIGTERM to domainft, which is turned into an exception while the child runs)."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=output,
        stderr=subprocess.STDOUT if output == subprocess.PIPE else output, start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    previous = _terminate_on_sigterm()
    try:
        yield proc
    except BaseException:
        end_group(proc)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if proc.stdout is not None:
            proc.stdout.close()


def end_group(proc: subprocess.Popen, grace: float = GRACE_S) -> None:
    """SIGTERM to the child's whole process group, then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM to domainft raises Terminated inside the block (in the main thread), so cleanup that runs between
    children (cancelling a cluster job) still runs."""
    previous = _terminate_on_sigterm()
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_on_sigterm():
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


_PR_SET_PDEATHSIG = 1


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # looked up here, not in the forked child: the child only calls it


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when domainft dies, even by kill -9 (Linux)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextmanager
def _log(path: Path | None, argv: list[str]):
    if path is None:
        yield None
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as log:
        log.write(f"\n$ {' '.join(map(str, argv))}\n".encode())
        log.flush()
        yield log


def _lines(stream, log) -> Iterator[str]:
    """Lines split on \\n and \\r (tqdm redraws with \\r), each raw chunk copied to the log first."""
    buf = b""
    while chunk := stream.read1(65536):
        if log is not None:
            log.write(chunk)
            log.flush()
        buf += chunk
        *parts, buf = re.split(rb"[\r\n]", buf)
        for part in parts:
            if part.strip():
                yield part.decode("utf-8", "replace")
    if buf.strip():
        yield buf.decode("utf-8", "replace")
