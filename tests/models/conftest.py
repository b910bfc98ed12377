"""A local model hub (tests/local_hub.py) the real huggingface_hub and modelscope-hub clients pull from, and a
DOMAINFT_HOME of each test's own, so every pull starts from nothing (engine venvs, llama.cpp tools and the
embedded models are linked in from the real one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from local_hub import EXTRA, GATED, GATED_TOKEN, SMOLLM2, TINY, LocalHub

from domainft.models.embedded import materialize
from domainft.resources import home


@pytest.fixture(scope="session")
def hub() -> LocalHub:
    server = LocalHub().start()
    tiny = materialize("embedded:tiny-random-llama")
    server.add_repo(TINY, tiny, files=EXTRA)
    server.add_repo(GATED, tiny, token=GATED_TOKEN)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smollm2_repo(hub: LocalHub) -> str:
    """The embedded SmolLM2-135M-Instruct files served under their hub id."""
    if SMOLLM2 not in hub.repos:
        hub.add_repo(SMOLLM2, materialize("embedded:smollm2"))
    return SMOLLM2


@pytest.fixture
def hub_home(tmp_path: Path) -> Path:
    """A DOMAINFT_HOME with no pulled models; the real venvs, llama.cpp tools and embedded models linked in."""
    real, own = home(), tmp_path / "domainft-home"
    (own / "models").mkdir(parents=True)
    for name in ("venvs", "llamacpp"):
        if (real / name).exists():
            (own / name).symlink_to(real / name)
    for model in ("embedded:smollm2", "embedded:tiny-random-llama"):
        path = materialize(model)
        (own / "models" / path.name).symlink_to(path)
    return own


@pytest.fixture
def hub_env(hub: LocalHub, hub_home: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a user whose hub is the local one (no token, no stored login)."""
    hub.throttle_bps = hub.fail_status = None
    return {"HF_ENDPOINT": hub.url, "MODELSCOPE_ENDPOINT": hub.url, "DOMAINFT_HOME": str(hub_home),
            "HF_HOME": str(tmp_path / "hf-home"), "MODELSCOPE_HOME": str(tmp_path / "ms-home"),
            "MODELSCOPE_CACHE": str(tmp_path / "ms-cache"), "HF_TOKEN": "", "MODELSCOPE_API_TOKEN": "",
            "HF_HUB_OFFLINE": "0", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
