"""ensure_engine's bookkeeping with a real (tiny) venv: marker, idempotence, half-built rebuild, pip errors."""

from __future__ import annotations


import pytest

from domainft.engines import NAMES, get_engine
from domainft.engines import venv as V
from domainft.errors import EngineError


@pytest.fixture
def mini(tmp_path, monkeypatch):
    """An engine 'mini' whose lock installs nothing and whose probe is the stdlib."""
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "mini.txt").write_text("# nothing beyond the stdlib\n")
    monkeypatch.setenv("DOMAINFT_HOME", str(tmp_path / "home"))
    real = V.build_inputs
    monkeypatch.setattr(V, "build_inputs",
                        lambda name: V.VenvInputs(locks / "mini.txt", V.Spec(probe="json"), "mini") if name == "mini"
                        else real(name))
    return locks / "mini.txt"


def test_half_built_venv_is_rebuilt_then_reused_without_building(mini, monkeypatch):
    path = V.venv_dir("mini")
    path.mkdir(parents=True)
    (path / "junk").write_text("from an interrupted install")
    assert "half-built" in V.engine_status("mini")["state"]

    assert V.ensure_engine("mini") == path
    assert not (path / "junk").exists() and (path / V.PIP_LOG).exists()
    assert (path / V.READY).read_text().strip() == V.lock_hash("mini")
    assert V.engine_status("mini")["ready"] is True

    def no_build(*args, **kwargs):
        raise AssertionError("a ready venv was built again")

    monkeypatch.setattr(V, "_build", no_build)
    assert V.ensure_engine("mini") == path


def test_changed_lock_gets_a_new_venv(mini):
    before = V.venv_dir("mini")
    mini.write_text("# nothing beyond the stdlib\n# edited\n")
    assert V.venv_dir("mini") != before


def test_pip_failure_is_one_line_with_pips_error(mini):
    mini.write_text("this is not === a requirement\n")
    with pytest.raises(EngineError) as info:
        V.ensure_engine("mini")
    assert "Invalid requirement" in info.value.one_line() and info.value.where.endswith(V.PIP_LOG)
    assert not (V.venv_dir("mini") / V.READY).exists()


@pytest.mark.parametrize("name", NAMES)
def test_real_locks_pin_the_engine_its_snapshot_describes_and_the_cpu_torch(name):
    versions = V.engine_versions(name)
    engine = get_engine(name)
    assert versions["torch"] == "2.13.0"
    assert versions[engine.package] == engine.known()["version"]  # known.json was made from this lock's engine


def test_deepspeed_is_built_beside_llamafactory():
    assert V.engine_versions("llamafactory")["deepspeed"] == "0.19.8"
