"""Hub models, pulled for real: the real huggingface_hub and modelscope-hub clients against a local hub on
127.0.0.1 (tests/local_hub.py), through `domainft` as a user runs it. What the engines need and nothing else is
pulled, pinned to a commit, resumed after kill -9, never half-used; every refusal is one line naming the id."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import DATA, assert_one_line_error, run_cli
from local_hub import EXTRA, GATED, GATED_TOKEN, TINY

from domainft import process

ENGINE_FILES = ["chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
                "tokenizer.json", "tokenizer_config.json"]


def snapshots(home: Path, repo_id: str, hub: str = "huggingface") -> list[Path]:
    folder = home / "models" / "hub" / hub / repo_id.replace("/", "--")
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "refs") if folder.is_dir() else []


def write_recipe(path: Path, base: str, **model) -> Path:
    model_yaml = ", ".join(f"{k}: {v}" for k, v in {"base": base, "chat_template": "smollm2", **model}.items())
    path.write_text(f"name: hubbed\nmodel: {{{model_yaml}}}\n"
                    f"dataset: {{files: [{DATA / 'coal' / 'demo_qa.jsonl'}]}}\n"
                    "training: {max_steps: 2, precision: fp32, logging_steps: 1, save_steps: 2}\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ what is pulled, and pinned


def test_pull_by_id_takes_what_engines_read_and_a_second_pull_asks_for_no_file(hub, hub_env, hub_home):
    done = run_cli("models", "pull", TINY, env=hub_env)
    assert done.code == 0, done.stderr
    [snap] = snapshots(hub_home, TINY)
    repo = hub.repos[TINY]
    assert snap.name == repo.sha and f"pinned to {repo.sha}" in done.stdout
    assert sorted(p.name for p in snap.iterdir() if not p.name.startswith(".")) == ENGINE_FILES
    assert not set(EXTRA) & {p.name for p in snap.rglob("*")}, "a format the engines never read was pulled"
    for name in ENGINE_FILES:  # plain files, byte for byte the hub's
        assert hashlib.sha256((snap / name).read_bytes()).hexdigest() == repo.meta[name]["sha256"], name
    before = len(hub.file_requests())
    again = run_cli("models", "pull", TINY, env=hub_env)
    assert again.code == 0 and len(hub.file_requests()) == before, "a complete snapshot was fetched again"


def test_a_run_pins_the_commit_and_a_rerun_asks_the_hub_nothing(hub, hub_env, hub_home, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", TINY)
    first = run_cli("models", "pull", recipe, env=hub_env, cwd=tmp_path)
    assert first.code == 0, first.stderr
    record = json.loads((tmp_path / "runs" / "hubbed" / "model" / "model.json").read_text())
    assert (record["id"], record["sha"], record["revision"]) == (TINY, hub.repos[TINY].sha, None)
    assert record["path"] == str(snapshots(hub_home, TINY)[0])
    count = len(hub.requests)
    again = run_cli("models", "pull", recipe, env=hub_env, cwd=tmp_path)
    assert again.code == 0 and len(hub.requests) == count, hub.requests[count:]
    # The engines get the snapshot folder; the rendered config says so.
    render = run_cli("render", recipe, env=hub_env, cwd=tmp_path)
    assert render.code == 0, render.stderr
    train_yaml = (tmp_path / "runs" / "hubbed" / "render" / "llamafactory" / "train.yaml").read_text()
    assert yaml.safe_load(train_yaml)["model_name_or_path"] == record["path"]


def test_validate_says_a_hub_model_is_not_pulled_then_checks_its_tokenizer(hub_env, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", TINY)
    before = run_cli("validate", recipe, "-s", "model.chat_template=deepseekr1", env=hub_env, cwd=tmp_path)
    assert before.code == 0, before.stderr
    assert f"note: model {TINY} (huggingface) is not pulled yet" in before.stderr
    assert run_cli("models", "pull", recipe, env=hub_env, cwd=tmp_path).code == 0
    after = run_cli("validate", recipe, "-s", "model.chat_template=deepseekr1", env=hub_env, cwd=tmp_path)
    assert_one_line_error(after, "-s model.chat_template=deepseekr1", "does not match the tokenizer")
    assert run_cli("validate", recipe, env=hub_env, cwd=tmp_path).code == 0


def test_an_unreachable_hub_falls_back_to_what_this_machine_pulled(hub, hub_env, tmp_path):
    assert run_cli("models", "pull", TINY, env=hub_env).code == 0
    offline = {**hub_env, "HF_ENDPOINT": "http://127.0.0.1:9"}
    recipe = write_recipe(tmp_path / "r.yaml", TINY)
    done = run_cli("models", "pull", recipe, env=offline, cwd=tmp_path)
    assert done.code == 0, done.stderr
    assert "connection refused; using" in done.stderr and hub.repos[TINY].sha[:12] in done.stderr


def test_a_worker_node_never_pulls(hub, hub_env, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", TINY)
    count = len(hub.requests)
    env = {**hub_env, "NODE_RANK": "1", "DOMAINFT_PULL_WAIT_S": "1"}
    waited = run_cli("models", "pull", recipe, "-s", "distributed.nnodes=2", env=env, cwd=tmp_path)
    assert_one_line_error(waited, "NODE_RANK=1", "node 0 pulls", TINY)
    assert len(hub.requests) == count, "a worker node asked the hub"
    assert run_cli("models", "pull", recipe, "-s", "distributed.nnodes=2", env={**hub_env, "NODE_RANK": "0"},
                   cwd=tmp_path).code == 0  # node 0, sharing DOMAINFT_HOME
    count = len(hub.requests)
    assert run_cli("models", "pull", recipe, "-s", "distributed.nnodes=2", env=env, cwd=tmp_path).code == 0
    assert len(hub.requests) == count


# ------------------------------------------------------------------ one line, before a long run


@pytest.mark.parametrize("case", ["unknown-id", "gated-no-token", "wrong-token", "no-revision", "hub-5xx",
                                  "no-network", "disk-too-small", "ms-unknown-id", "ms-no-token", "ms-5xx"])
def test_a_refused_pull_is_one_line_naming_the_id_and_what_to_do(case, hub, hub_env, hub_home):
    env, args = dict(hub_env), ["models", "pull"]
    repo_id, needles = TINY, ()
    if case == "unknown-id":
        repo_id, needles = "domainft-test/no-such-model", ("has no model", "check the id")
    elif case == "gated-no-token":
        repo_id, needles = GATED, ("is gated", "set HF_TOKEN")
    elif case == "wrong-token":
        repo_id, needles = GATED, ("refused HF_TOKEN", "valid read token")
        env["HF_TOKEN"] = "hf_wrong_token"
    elif case == "no-revision":
        args += ["--revision", "v9"]
        needles = ("has no revision 'v9'",)
    elif case == "hub-5xx":
        hub.fail_status, needles = 503, ("answered 503", "rerun later")
    elif case == "no-network":
        env["HF_ENDPOINT"], needles = "http://127.0.0.1:9", ("cannot reach", "connection refused", "HF_ENDPOINT")
    elif case == "disk-too-small":  # the hub says the weights are 10 PB: refused before a byte is written
        repo_id, needles = "domainft-test/huge", ("needs", "GB more", "DOMAINFT_HOME")
        hub.add_repo(repo_id, files={"config.json": b"{}", "model.safetensors": b"\0" * 20_000})
        hub.repos[repo_id].meta["model.safetensors"]["lfs"]["size"] = 10**16
    elif case.startswith("ms-"):
        args += ["--hub", "modelscope"]
        env["MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS"] = "1"  # the client's own retry setting: no 7 s of backoff
        if case == "ms-unknown-id":
            repo_id, needles = "domainft-test/no-such-model", ("has no model", "ModelScope")
        elif case == "ms-no-token":
            repo_id, needles = GATED, ("401", "MODELSCOPE_API_TOKEN")
        else:
            hub.fail_status, needles = 502, ("answered 502", "rerun later")
    try:
        done = run_cli(*args, repo_id, env=env)
    finally:
        hub.fail_status = None
    assert_one_line_error(done, repo_id, *needles)
    assert done.code == 5
    assert snapshots(hub_home, repo_id, "modelscope" if case.startswith("ms-") else "huggingface") == []


def test_train_in_bf16_without_a_gpu_is_refused_before_the_pull(hub, hub_env, tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", TINY)
    count = len(hub.requests)
    done = run_cli("train", recipe, "-s", "training.precision=bf16", env=hub_env, cwd=tmp_path)
    assert_one_line_error(done, "training.precision", "needs a CUDA GPU", "fp32")
    assert len(hub.requests) == count


# ------------------------------------------------------------------ kill -9, then resume


def _killed_midway(hub, args: list[str], env: dict, partial_glob: str, home: Path) -> int:
    """Start a pull from a slow hub, kill -9 it once part of the weights is on disk; the partial file's size."""
    hub.throttle_bps = 1.5e6
    proc = subprocess.Popen([sys.executable, "-m", "domainft.cli", *args], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            parts = [p for p in home.glob(partial_glob) if p.stat().st_size > 0]
            if parts:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no partial download appeared")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        hub.throttle_bps = None
    return parts[0].stat().st_size


@pytest.mark.parametrize("which", ["huggingface", "modelscope"])
def test_a_pull_killed_midway_resumes_with_a_range_request(which, hub, hub_env, hub_home):
    args = ["models", "pull", TINY, "--hub", which]
    weights = hub.repos[TINY].meta["model.safetensors"]
    got = _killed_midway(hub, args, hub_env, f"models/hub/{which}/*/*.partial/model.safetensors.incomplete", hub_home)
    assert 0 < got < weights["size"]
    assert snapshots(hub_home, TINY, which)[0].name.endswith(".partial"), "a half pull looks complete"
    count = len(hub.requests)
    done = run_cli(*args, env=hub_env)
    assert done.code == 0, done.stderr
    resumed = [r for r in hub.requests[count:] if "model.safetensors" in r["path"] + r["query"]]
    assert [r["range"] for r in resumed] == [f"bytes={got}-"], resumed
    [snap] = snapshots(hub_home, TINY, which)
    assert hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest() == weights["sha256"]
    assert not list(snap.rglob("*.incomplete"))
    assert resumed[0]["sent"] == weights["size"] - got  # only the rest crossed the wire again


# ------------------------------------------------------------------ secrets


def test_the_token_reaches_the_pull_only(hub, hub_env, hub_home, tmp_path, monkeypatch):
    env = {**hub_env, "HF_TOKEN": GATED_TOKEN}
    recipe = write_recipe(tmp_path / "r.yaml", GATED)
    done = run_cli("models", "pull", recipe, env=env, cwd=tmp_path)
    assert done.code == 0, done.stderr
    assert hub.requests[-1]["token"], "the token did not reach the hub"
    for folder in (tmp_path, hub_home / "models" / "hub"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert GATED_TOKEN.encode() not in path.read_bytes(), path
    assert GATED_TOKEN not in done.stdout + done.stderr
    # No engine child ever sees a hub setting or a proxy: they run offline.
    for key, value in {"HF_TOKEN": GATED_TOKEN, "HF_ENDPOINT": hub.url, "MODELSCOPE_API_TOKEN": "ms",
                       "MODELSCOPE_ENDPOINT": hub.url, "HTTPS_PROXY": "http://proxy:3128",
                       "HUGGING_FACE_HUB_TOKEN": GATED_TOKEN}.items():
        monkeypatch.setenv(key, value)
    child = process.clean_env(tmp_path)
    assert not {k for k in child if k.startswith(("HF_TOKEN", "HF_ENDPOINT", "MODELSCOPE", "HTTPS_PROXY",
                                                  "HUGGING_FACE"))}
    assert child["HF_HUB_OFFLINE"] == "1"
