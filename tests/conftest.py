"""Shared fixtures: a CLI runner and the real models tests run against."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_cli


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer: real code paths at seconds per step."""
    from domainft.models.embedded import materialize

    return materialize("embedded:tiny-random-llama")


@pytest.fixture(scope="session")
def smollm2_model() -> Path:
    from domainft.models.embedded import materialize

    return materialize("embedded:smollm2")


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory) -> str:
    """A real `python -m llama_cpp.server` on 127.0.0.1 serving the embedded SmolLM2 GGUF as model `smollm2`
    (teacher and judge tests share it); started and stopped by domainft's own launcher. Yields its /v1 URL."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    from domainft.llama_server import serving
    from domainft.models.embedded import smollm2_gguf

    with serving(smollm2_gguf(), log_path=tmp_path_factory.mktemp("llama") / "server.log", alias="smollm2") as served:
        yield served.url


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real one-node Slurm cluster (slurm_cluster.py) for the whole session: skipped with the reason where Slurm
    is not installed or cannot start (a failure under CI); every job cancelled and the daemons stopped at the end."""
    from slurm_cluster import one_node_cluster, skip_or_fail, unavailable

    if reason := unavailable():
        skip_or_fail(reason)
    try:
        context = one_node_cluster(tmp_path_factory.mktemp("slurm"))
        cluster = context.__enter__()
    except RuntimeError as exc:
        skip_or_fail(f"Slurm did not start: {exc}")
    try:
        yield cluster
    finally:
        context.__exit__(None, None, None)
