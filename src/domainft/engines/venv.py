"""One virtual environment per engine, built from its pinned lock file and reused.

The engines pin conflicting transformers/peft/datasets versions, so each gets its own venv under
`home()/venvs/<engine>-<lockhash12>`, built from `engines/<engine>/lock.txt` and the engine's `venv` Spec.
A ready-marker holding the lock hash makes a second call instant; a folder without it is a half-built venv
and is wiped and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import process
from ..errors import EngineError
from ..fsutil import file_lock
from ..resources import home
from . import get_engine

ENGINES_DIR = Path(__file__).parent
READY = ".domainft-ready"
PIP_LOG = "pip.log"


@dataclass(frozen=True)
class Spec:
    """How an engine's venv is built, besides its lock file. Part of the venv's hash."""

    #: Built after the lock with `--no-build-isolation` so the build sees the venv's own torch.
    no_isolation: tuple[str, ...] = ()
    #: Removed after install: they break imports beside the CPU torch wheel (see `_fixups`).
    uninstall: tuple[str, ...] = ()
    #: The module whose import proves the venv works.
    probe: str = ""


@dataclass(frozen=True)
class VenvInputs:
    lock: Path
    spec: Spec
    package: str  # the engine's distribution in the lock


def build_inputs(name: str) -> VenvInputs:
    """What a registered engine's venv is built from (an unknown name is a one-line EngineError)."""
    engine = get_engine(name)
    return VenvInputs(ENGINES_DIR / name / "lock.txt", engine.venv, engine.package)


def lock_hash(name: str) -> str:
    inputs = build_inputs(name)
    return hashlib.sha256(f"{inputs.lock.read_text()}\n{inputs.spec!r}".encode()).hexdigest()


def venv_dir(name: str) -> Path:
    return home() / "venvs" / f"{name}-{lock_hash(name)[:12]}"


def venv_bin(name: str, exe: str) -> Path:
    return venv_dir(name) / "bin" / exe


def is_ready(name: str) -> bool:
    marker = venv_dir(name) / READY
    return marker.exists() and marker.read_text().strip() == lock_hash(name)


def engine_status(name: str) -> dict:
    """For `domainft doctor`: where the venv is, whether it is ready, and what it holds."""
    path = venv_dir(name)
    status = {"engine": name, "path": str(path), "lock_hash": lock_hash(name)[:12], "ready": is_ready(name),
              "versions": engine_versions(name)}
    if status["ready"]:
        status["size_mb"] = round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20)
    elif path.exists():
        status["state"] = "half-built (will be rebuilt)"
    else:
        status["state"] = "not installed (run `domainft engines install`)"
    return status


def engine_versions(name: str) -> dict[str, str]:
    """The pinned versions that matter for a run (read from the lock, so no venv is needed)."""
    inputs = build_inputs(name)
    wanted = {inputs.package, "torch", "transformers", "peft", "trl", "datasets", "accelerate", "deepspeed",
              "bitsandbytes"}
    pins = [*inputs.lock.read_text().splitlines(), *inputs.spec.no_isolation]
    found = {}
    for line in pins:
        pkg, sep, ver = line.strip().partition("==")
        pkg = pkg.lower().replace("_", "-")  # pip freeze writes ms_swift for ms-swift
        if sep and pkg in wanted:
            found[pkg] = ver
    return dict(sorted(found.items()))


def ensure_engine(name: str) -> Path:
    """The ready venv for `name`, building it first if needed (about 1.5-2 min on 2 cores)."""
    if is_ready(name):
        return venv_dir(name)
    path = venv_dir(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.parent / f".{path.name}.lock"):  # two processes never build the same venv at once
        if is_ready(name):
            return path
        _build(name, path)
    return path


def require_engine(name: str) -> Path:
    """The ready venv for `name`, or a one-line EngineError saying how to install it (never a silent
    multi-minute install in the middle of a train or validate)."""
    if is_ready(name):
        return venv_dir(name)
    raise EngineError(f"the {name} engine is not installed", where=venv_dir(name),
                      hint=f"run: domainft engines install {name}")


def _build(name: str, path: Path) -> None:
    from rich.console import Console

    inputs = build_inputs(name)
    lock, spec = inputs.lock, inputs.spec
    if path.exists():
        shutil.rmtree(path)  # no marker: a half-built venv from an interrupted run
    started = time.monotonic()
    console = Console(stderr=True)
    with console.status(f"[bold]Installing {name} into {path} (pip log: {path / PIP_LOG})") as status:
        _run([sys.executable, "-m", "venv", str(path)], path, name)
        py = str(path / "bin" / "python")
        _run([py, "-m", "pip", "install", "--upgrade", "pip"], path, name)
        status.update(f"[bold]Installing {name} from its lock file (pip log: {path / PIP_LOG})")
        # torch is pinned in the same resolver run as the engine, so pip keeps the one build the lock names.
        _run([py, "-m", "pip", "install", "-r", str(lock)], path, name)
        for req in spec.no_isolation:
            status.update(f"[bold]Installing {req} for {name}")
            _run([py, "-m", "pip", "install", "--no-build-isolation", req], path, name, env={"DS_BUILD_OPS": "0"})
        if spec.uninstall:
            _run([py, "-m", "pip", "uninstall", "-y", *spec.uninstall], path, name)
        _fixups(path)
        status.update(f"[bold]Checking that {spec.probe} imports")
        _run([py, "-c", f"import {spec.probe}"], path, name)
    (path / READY).write_text(lock_hash(name) + "\n")
    console.print(f"{name} venv ready in {time.monotonic() - started:.0f} s: {path}")


def _fixups(path: Path) -> None:
    """Workarounds for wheels that do not import beside the CPU torch 2.13 wheel."""
    # LLaMA-Factory requires torchaudio and its mm_plugin imports it unconditionally (so uninstalling it
    # breaks every run), yet no torchaudio release matches torch 2.13: the newest (2.11) ships compiled
    # extensions built against another torch ABI, and loading them fails. torchaudio's own loader treats
    # a missing extension as optional (`_load_lib` returns False, as in its pex deployments) and the
    # pure-Python package, all a text-only run touches, then imports. So we remove only those .so files,
    # and only when the import actually fails: a venv whose torchaudio matches its torch is left alone.
    probe = process.run([str(path / "bin" / "python"), "-c", "import torchaudio"], env=_pip_env(path),
                        log_path=path / PIP_LOG)
    if probe.returncode == 0:
        return
    for lib in (path / "lib").glob("python3*/site-packages/torchaudio/lib/*.so"):
        lib.unlink()


def _pip_env(path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**process.clean_env(path, also=process.PIP_PASS_THROUGH), **(extra or {})}


def _run(argv: list[str], path: Path, name: str, env: dict[str, str] | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = process.run(argv, env=_pip_env(path, env), log_path=path / PIP_LOG, tail=400)
    except OSError as exc:
        raise EngineError(f"installing the {name} venv failed: cannot run {argv[0]}: {exc.strerror}",
                          where=path) from None
    if done.returncode != 0:
        raise EngineError(f"installing the {name} venv failed: {_last_error(done.tail)}", where=path / PIP_LOG)


def _last_error(lines: list[str], n: int = 3) -> str:
    lines = [ln.strip() for ln in lines if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("ERROR", "error:")) or "Error" in ln]
    return " | ".join((errors or lines)[-n:])[-600:]


# Runs inside the engine's venv: what the GPU-only speed switches need.
_CAPABILITIES = """
import importlib.util as u, json, torch
print(json.dumps({"cuda": torch.cuda.is_available(),
                  **{m: u.find_spec(m) is not None for m in ("flash_attn", "liger_kernel")}}))
"""


def venv_capabilities(name: str) -> dict[str, bool]:
    """Whether the engine's venv sees a CUDA GPU and has flash_attn / liger_kernel (imports torch: ~2-5 s)."""
    path = venv_dir(name)
    done = process.run([str(venv_bin(name, "python")), "-c", _CAPABILITIES], env=process.clean_env(path, path),
                       log_path=None)
    if done.returncode != 0:
        raise EngineError(f"cannot probe the {name} venv: {_last_error(done.tail)}", where=path)
    return json.loads(done.tail[-1])
