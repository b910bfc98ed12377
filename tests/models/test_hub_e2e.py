"""`domainft run` on a recipe that names a hub model, as on a fresh GPU machine: the real huggingface_hub client pulls
SmolLM2-135M-Instruct by its hub id from a local hub (HF_ENDPOINT), the engines train, evaluate and export from the
pulled snapshot offline, and the run records the commit."""

from __future__ import annotations

import json

import pytest
from helpers import DATA, run_cli

TOKEN = "hf_user_token_that_must_not_leak"


@pytest.mark.e2e
def test_run_pulls_a_hub_model_once_trains_evaluates_exports_and_pins_its_commit(hub, smollm2_repo, hub_env,
                                                                                  hub_home, tmp_path):
    recipe = tmp_path / "hub.yaml"
    recipe.write_text(
        f"name: hub-smollm2\ndomain: coal\n"
        f"model: {{base: {smollm2_repo}, chat_template: smollm2}}\n"
        f"dataset: {{files: [{DATA / 'coal' / 'demo_qa.jsonl'}]}}\n"
        "training: {max_steps: 2, precision: fp32, logging_steps: 1, save_steps: 2, cutoff_len: 256}\n"
        "eval: {tasks: [coal_safety], limit: 1, max_new_tokens: 8}\n"
        "sampling: {max_new_tokens: 8}\nexport: {quantizations: [q4_0]}\n", encoding="utf-8")
    env = {**hub_env, "HF_TOKEN": TOKEN}
    first = len(hub.requests)
    done = run_cli("run", recipe, env=env, cwd=tmp_path, timeout=1500)
    assert done.code == 0, (done.stdout + done.stderr)[-4000:]
    run = tmp_path / "runs" / "hub-smollm2"
    manifest = json.loads((run / "manifest.json").read_text())
    sha = hub.repos[smollm2_repo].sha
    assert manifest["model"] == {"hub": "huggingface", "id": smollm2_repo, "revision": None, "sha": sha,
                                 "endpoint": hub.url}
    assert all(manifest["stages"][s]["status"] == "done" for s in ("model", "render", "train", "export", "eval"))
    assert (run / "export" / "hub-smollm2-q4_0.gguf").is_file() and (run / "eval" / "report.md").is_file()
    assert list((run / "train" / "llamafactory" / "runs").rglob("events.out.tfevents.*")), "no TensorBoard log"

    # Every request was the pull's: the revision, the file list and each file once. No engine child, lm-eval or
    # the converter asked the hub for anything: they ran offline on the snapshot.
    asked = hub.requests[first:]
    files = [r["path"].rsplit("/", 1)[1] for r in asked if "/resolve/" in r["path"]]
    assert sorted(files) == sorted(hub.repos[smollm2_repo].files), asked
    assert [r["path"] for r in asked if "/resolve/" not in r["path"]] == [
        "/api/agent-harnesses", f"/api/models/{smollm2_repo}/revision/main",
        f"/api/models/{smollm2_repo}/tree/{sha}"], asked
    train_yaml = (run / "render" / "llamafactory" / "train.yaml").read_text()
    assert str(hub_home / "models" / "hub" / "huggingface" / smollm2_repo.replace("/", "--") / sha) in train_yaml

    # A second run: everything up to date, no request at all.
    count = len(hub.requests)
    again = run_cli("run", recipe, env=env, cwd=tmp_path, timeout=900)
    assert again.code == 0, again.stderr[-3000:]
    assert len(hub.requests) == count, hub.requests[count:]
    assert "model  " in again.stdout and "skipped" in again.stdout

    lineage = run_cli("lineage", run / "train" / "llamafactory" / "adapter_config.json", env=env)
    assert f"base model {smollm2_repo} from huggingface" in lineage.stdout.replace("\n", " ")
    assert sha in lineage.stdout.replace("\n", "").replace(" ", "")

    # The token reached the pull's requests and nothing else: not a file of the run or the snapshot, not a log.
    assert all(r["token"] for r in asked if r["path"] != "/api/agent-harnesses")
    for folder in (run, hub_home / "models" / "hub"):
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in done.stdout + done.stderr + again.stdout + again.stderr
