"""kill -9 (SIGKILL to the whole process group) at a random point of datagen, training and export, then a rerun.

Each rerun must complete with the result an uninterrupted run gives, with no duplicated records, no half-written
file left behind (*.tmp, *.partial, a temp merge folder) and a manifest.json that parses at every moment.
The kill points come from a fixed seed, so a failure reproduces.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from helpers import DATA, run_cli
from rel_helpers import assert_complete, coal_recipe, read_jsonl
from stub_teacher import Stub

SEED = 20240808
QA = DATA / "coal" / "demo_qa.jsonl"
MAX_STEPS = 10  # checkpoints every 2 steps


# ------------------------------------------------------------------ machinery


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """`domainft ARGS` in a process group of its own, so the kill reaches the engine it spawns too."""
    return subprocess.Popen([sys.executable, "-m", "domainft.cli", *map(str, args)], cwd=cwd,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "COLUMNS": "200"})


def manifest_parses(run_dir: Path) -> None:
    path = run_dir / "manifest.json"
    if path.exists():
        json.loads(path.read_text(encoding="utf-8"))  # atomic saves: never a torn file, even mid-kill


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], delay: float, run_dir: Path,
              timeout: float = 240) -> None:
    """Wait until ready(), then `delay` seconds more, then SIGKILL the process group. The manifest is read
    all along: it must parse whenever someone looks."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished (exit {proc.returncode}) before the kill point"
        assert time.monotonic() < deadline, "kill point never reached"
        manifest_parses(run_dir)
        time.sleep(0.02)
    end = time.monotonic() + delay
    while time.monotonic() < end:
        manifest_parses(run_dir)
        time.sleep(0.02)
    assert proc.poll() is None, "finished before the kill"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest_parses(run_dir)


def half_written(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*")
            if p.name.endswith((".tmp", ".partial")) or p.name.startswith((".merged.", ".write-test"))]


def rerun_ok(args: list[str], cwd: Path) -> str:
    result = run_cli(*args, cwd=cwd, timeout=600)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stdout + result.stderr


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


# ------------------------------------------------------------------ (a) datagen


def test_kill_9_datagen_then_rerun_gives_identical_splits(tmp_path):
    rng = random.Random(SEED)
    with Stub(fault_rate=0.3, latency_s=0.1, seed=5, faults=("500", "429", "malformed")) as stub:
        recipe = write_recipe(tmp_path / "r.yaml", coal_recipe(provider="openai", base_url=stub.url, model="stub",
                                                                concurrency=2, max_chunks=24))
        rerun_ok(["datagen", recipe, "--run-dir", tmp_path / "reference"], tmp_path)
        run = tmp_path / "killed"
        journal = run / "datagen" / "journal.jsonl"
        # The stub's latency paces the run (2 workers x 0.1 s a call): at least 8 chunks remain after the kill point.
        after, delay = rng.randint(3, 16), rng.uniform(0, 0.2)
        proc = start(["datagen", recipe, "--run-dir", run], tmp_path, tmp_path / "killed.log")
        kill_when(proc, lambda: journal.exists() and len(journal.read_text().splitlines()) >= after, delay, run)
        killed_at = len(journal.read_text().splitlines())
        assert killed_at < 24, "the kill must land mid-run"
        print(f"datagen killed at {killed_at}/24 chunks")
        rerun_ok(["datagen", recipe, "--run-dir", run], tmp_path)
    summary = json.loads((run / "datagen" / "summary.json").read_text())
    assert summary["resumed_chunks"] >= after and summary["failed"] == 0
    chunk_ids = [c["id"] for c in read_jsonl(run / "extract" / "chunks.jsonl")[:24]]
    pairs = assert_complete(run / "datagen", chunk_ids)
    reference = read_jsonl(tmp_path / "reference" / "datagen" / "pairs.jsonl")
    key = lambda p: json.dumps(p, sort_keys=True, ensure_ascii=False)
    assert sorted(map(key, pairs)) == sorted(map(key, reference))
    for split in ("train", "val", "test"):
        assert (run / "datagen" / f"{split}.jsonl").read_bytes() == \
            (tmp_path / "reference" / "datagen" / f"{split}.jsonl").read_bytes()
    assert not half_written(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["datagen"]["status"] == "done"


# ------------------------------------------------------------------ (b) training


def tiny_recipe(**extra) -> dict:
    return {"name": "kill-tiny", "engine": "llamafactory",
            "model": {"base": "embedded:tiny-random-llama", "chat_template": "smollm2"},
            "dataset": {"files": [str(QA)]},
            "training": {"max_steps": MAX_STEPS, "save_steps": 2, "logging_steps": 1, "precision": "fp32", "seed": 7},
            "export": {"quantizations": ["q8_0"]}, **extra}


def complete_checkpoints(train_dir: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in train_dir.glob("checkpoint-*")
                  if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").exists())


@pytest.mark.e2e
def test_kill_9_training_then_rerun_resumes_from_the_last_checkpoint(tmp_path, tiny_model):
    from domainft.engines.venv import ensure_engine

    ensure_engine("llamafactory")
    rng = random.Random(SEED + 1)
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe())
    run = tmp_path / "run"
    out = run / "train" / "llamafactory"
    # A step of the tiny model takes 0.1-2 s, with the load: at least 6 steps remain after the kill point.
    first, delay = rng.choice([2, 4]), rng.uniform(0, 0.25)
    proc = start(["train", recipe, "--run-dir", run], tmp_path, tmp_path / "killed.log")
    kill_when(proc, lambda: first in complete_checkpoints(out), delay, run)
    assert not (out / "adapter_model.safetensors").exists(), "the kill must land before training ends"
    resume_from = complete_checkpoints(out)[-1]
    print(f"training killed {delay:.2f}s after checkpoint-{first}; last complete checkpoint-{resume_from}")
    # A kill in the middle of a save leaves a checkpoint without trainer_state.json (the engine writes it
    # last). Leave one such torn checkpoint past the real ones: the rerun must not try to resume from it.
    torn = out / f"checkpoint-{resume_from + 2}"
    if resume_from + 2 < MAX_STEPS and not torn.exists():
        shutil.copytree(out / f"checkpoint-{resume_from}", torn)
        (torn / "trainer_state.json").unlink()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "running"  # killed: no chance to say otherwise

    rerun_ok(["train", recipe, "--run-dir", run], tmp_path)
    log = (run / "logs" / "train-llamafactory.log").read_text(errors="replace")
    second = log.split("\n$ ")[-1]
    assert f"Resuming training from {out / f'checkpoint-{resume_from}'}" in second
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps == list(range(1, MAX_STEPS + 1)), "each step logged once: nothing repeated, nothing skipped"
    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    assert MAX_STEPS in complete_checkpoints(out)
    assert not half_written(run)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "done"
    # Done means done: a third call launches nothing.
    rerun_ok(["train", recipe, "--run-dir", run], tmp_path)
    assert log == (run / "logs" / "train-llamafactory.log").read_text(errors="replace")


@pytest.mark.e2e
def test_kill_9_pretraining_then_rerun_resumes_it_and_training_goes_on_from_its_adapter(tmp_path, tiny_model):
    """method.pretrain is a stage like the others: killed mid-way, the rerun resumes it from its last checkpoint,
    SFT then loads its adapter, the manifest records both, and a third call runs nothing."""
    from domainft.engines.venv import ensure_engine

    ensure_engine("llamafactory")
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(
        extract={"inputs": [str(DATA / "coal" / "docs")], "chunk_chars": 600, "overlap_chars": 60},
        datagen={"provider": "extractive", "prompts": "coal", "max_chunks": 8, "split": {"val": 0.0, "test": 0.0}},
        method={"pretrain": {"max_steps": MAX_STEPS}}, training={**tiny_recipe()["training"], "max_steps": 4}))
    run = tmp_path / "run"
    out = run / "pretrain" / "llamafactory"
    proc = start(["train", recipe, "--run-dir", run], tmp_path, tmp_path / "killed.log")
    kill_when(proc, lambda: 4 in complete_checkpoints(out), random.Random(SEED + 3).uniform(0, 0.25), run)
    assert not (out / "adapter_model.safetensors").exists(), "the kill must land before pre-training ends"
    resume_from = complete_checkpoints(out)[-1]

    rerun_ok(["train", recipe, "--run-dir", run], tmp_path)
    pretrain_log = (run / "logs" / "pretrain-llamafactory.log").read_text(errors="replace")
    assert f"Resuming training from {out / f'checkpoint-{resume_from}'}" in pretrain_log.split("\n$ ")[-1]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == MAX_STEPS
    train_log = (run / "logs" / "train-llamafactory.log").read_text(errors="replace")
    assert f"adapter_name_or_path={out}" in train_log.replace("'", "").replace('"', "")
    assert "Loaded adapter(s)" in train_log or "Resume" in train_log or "adapter" in train_log
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["pretrain"]["status"] == manifest["stages"]["train"]["status"] == "done"
    assert any(key.startswith("pretrain/llamafactory/") for key in manifest["stages"]["train"]["inputs"])
    again = rerun_ok(["run", recipe, "--run-dir", run, "--only", "pretrain", "--only", "train"], tmp_path)
    assert "pretrain: up to date, skipped" in again and "train: up to date, skipped" in again


# ------------------------------------------------------------------ (c) export


def exported(export_dir: Path) -> dict[str, str]:
    from domainft.manifest import sha256_file

    return {p.name: sha256_file(p) for p in sorted(export_dir.iterdir()) if p.is_file() and p.name != "export.json"}


@pytest.mark.e2e
def test_kill_9_export_at_each_phase_then_rerun_gives_the_same_files(tmp_path, tiny_model):
    """Killed once in the merge, once in the GGUF conversion, once in quantization (each rerun is killed again),
    then a last rerun: the same sha256 for every file as an uninterrupted export."""
    from peft_helpers import make_random_adapter

    from domainft.engines.venv import ensure_engine

    ensure_engine("llamafactory")
    rng = random.Random(SEED + 2)
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe())
    adapter = make_random_adapter(tiny_model, tmp_path / "adapter")
    runs = {}
    for name in ("reference", "killed"):
        runs[name] = tmp_path / name
        shutil.copytree(adapter, runs[name] / "train" / "llamafactory")
    rerun_ok(["export", recipe, "--run-dir", runs["reference"]], tmp_path)
    reference = exported(runs["reference"] / "export")
    assert set(reference) == {"kill-tiny-f16.gguf", "kill-tiny-q8_0.gguf", "Modelfile"}

    seconds = json.loads((runs["reference"] / "export" / "export.json").read_text())["seconds"]

    run = runs["killed"]
    logs = run / "logs"
    # A phase is under way once its subprocess is launched (its log gets a new "$ argv" line); the kill lands a
    # seeded fraction of that phase's duration (measured in the reference run) later, whatever the machine's speed.
    phases = {"merge": ("merge-llamafactory.log", seconds["merge"]),
              "convert": ("export-convert.log", seconds["convert"]),
              "quantize": ("export-quantize.log", seconds["quantize_q8_0"])}

    def launches(log: str) -> int:
        path = logs / log
        return path.read_text(errors="replace").count("\n$ ") if path.exists() else 0

    for phase, (log, duration) in phases.items():
        before, delay = launches(log), rng.uniform(0.1, 0.7) * duration
        proc = start(["export", recipe, "--run-dir", run], tmp_path, tmp_path / f"killed-{phase}.log")
        try:
            kill_when(proc, lambda log=log, before=before: launches(log) > before, delay, run)
            print(f"export killed {delay:.2f}s into {phase} (reference {duration}s)")
        except AssertionError:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    rerun_ok(["export", recipe, "--run-dir", run], tmp_path)
    out = run / "export"
    assert exported(out) == reference  # byte-identical GGUFs and Modelfile
    record = json.loads((out / "export.json").read_text())
    assert {f["sha256"] for f in record["files"]} == set(reference.values())
    assert not half_written(run), half_written(run)
    assert (run / "export" / "merged" / "config.json").exists()
