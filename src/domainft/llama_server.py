"""`python -m llama_cpp.server` on 127.0.0.1: a GGUF served for lm-eval (and tests), started and stopped here.

The server runs from this interpreter (llama-cpp-python[server] is a wrapper dependency), on a free loopback port,
in its own process group, with its whole output in a log file; leaving the block stops it, whatever happened.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import process
from .errors import EngineError

READY_TIMEOUT_S = 180.0
N_CTX = 4096  # the context a GGUF is opened with: by `domainft chat` and by the server lm-eval talks to


@dataclass(frozen=True)
class Served:
    url: str  # the OpenAI-compatible root, http://127.0.0.1:PORT/v1
    alias: str  # the model name the server answers to
    log_path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_argv(gguf: Path, *, port: int | str, alias: str, seed: int, n_ctx: int = N_CTX) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
        "--model_alias", alias, "--n_ctx", str(n_ctx), "--seed", str(seed),
        # The same threads `domainft chat` uses on this GGUF: the answers are then the same token for token.
        "--n_threads", str(os.cpu_count() or 1),
    ]


@contextmanager
def serving(gguf: Path, *, log_path: Path, alias: str = "model", n_ctx: int = N_CTX, seed: int = 0,
            ready_timeout: float = READY_TIMEOUT_S) -> Iterator[Served]:
    """Serve `gguf` until the block ends; yields the address once the server answers /v1/models."""
    import httpx

    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = server_argv(gguf, port=port, alias=alias, n_ctx=n_ctx, seed=seed)
    env = {**process.clean_env(log_path.parent), "PYTHONUNBUFFERED": "1"}
    url = f"http://127.0.0.1:{port}/v1"
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        with process.started(argv, env=env, output=log) as proc:
            try:
                deadline = time.monotonic() + ready_timeout
                while True:
                    if proc.poll() is not None:
                        raise EngineError(f"llama_cpp.server exited (code {proc.returncode}) before it served "
                                          f"{gguf.name}: {_tail(log_path)}", where=log_path)
                    try:
                        if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise EngineError(f"llama_cpp.server did not answer within {ready_timeout:.0f} s",
                                          where=log_path)
                    time.sleep(0.3)
                yield Served(url=url, alias=alias, log_path=log_path)
            finally:
                if proc.poll() is None:
                    process.end_group(proc)


def _tail(log_path: Path) -> str:
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    return process.error_lines(lines, 1) or "(no output)"
