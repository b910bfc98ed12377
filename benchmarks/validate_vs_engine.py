"""How much sooner `domainft validate` rejects a misspelt engine key than the engine itself, as a user waits for it.

One run, two whole-process measurements on the same recipe (tiny model, demo coal QA, a misspelt LoRA key):
  1. `domainft validate recipe.yaml` (the console script, a fresh interpreter each time), with
     `engine_overrides: {lora_rnak: 8}` in the recipe;
  2. `llamafactory-cli train train.yaml` from the engine's venv, run from the rendered folder with the same key
     in its YAML, timed until the process exits with its own error.
Each is run several times; the medians are compared. Target: ratio >= 40x, also with `--load 2` (two busy
processes on the cores all along, as on a loaded 2-core machine).
Usage: python benchmarks/validate_vs_engine.py [--runs N] [--load K]  (builds the LLaMA-Factory venv if needed)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from domainft.render import render_checked
from domainft.engines.venv import ensure_engine
from domainft.engines.folder import write_folder
from domainft.process import clean_env
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict

REPO = Path(__file__).resolve().parents[1]
TYPO = "lora_rnak"
TARGET = 40


def timed(argv: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - start, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of domainft validate (the engine gets 2)")
    parser.add_argument("--load", type=int, default=0, help="busy processes kept running during both measurements")
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        return measure(args.runs, args.load)
    finally:
        for proc in busy:
            proc.kill()


def measure(runs: int, load: int) -> int:
    venv = ensure_engine("llamafactory")
    work = Path(tempfile.mkdtemp(prefix="domainft-bench-"))
    base = {
        "name": "bench-validate",
        "engine": "llamafactory",
        "model": {"base": "embedded:tiny-random-llama"},
        "dataset": {"files": [str(REPO / "data" / "coal" / "demo_qa.jsonl")]},
        "training": {"max_steps": 1, "precision": "fp32"},
    }
    recipe = work / "typo.yaml"
    recipe.write_text(yaml.safe_dump({**base, "engine_overrides": {TYPO: 8}}), encoding="utf-8")

    # 1. The command as typed: a new process each time, in the user's environment (a shell that set
    # PYTHONDONTWRITEBYTECODE would make every run recompile domainft; a first run writes the bytecode).
    domainft = Path(sys.executable).parent / "domainft"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    timed([str(domainft), "validate", str(recipe)], cwd=work, env=env)
    ours_s, ours = [], None
    for _ in range(runs):
        seconds, done = timed([str(domainft), "validate", str(recipe)], cwd=work, env=env)
        if done.returncode == 0:
            raise SystemExit("domainft validate accepted the misspelt key")
        ours_s.append(seconds)
        ours = done.stderr.strip().splitlines()[-1]

    # 2. The engine gets the same key in its own YAML, in a folder rendered without our check (as a by-hand user).
    clean = make_plan(recipe_from_dict(base), run_dir=work / "run")
    files = render_checked(clean)
    config = yaml.safe_load(files["train.yaml"])
    config[TYPO] = 8
    files["train.yaml"] = yaml.safe_dump(config, sort_keys=False)
    write_folder(clean, files, work / "folder")
    engine_s, theirs = [], None
    for _ in range(2):
        seconds, done = timed([str(venv / "bin" / "llamafactory-cli"), "train", "train.yaml"],
                              env=clean_env(work, venv), cwd=work / "folder")
        if done.returncode == 0:
            raise SystemExit("LLaMA-Factory accepted the misspelt key")
        engine_s.append(seconds)
        theirs = ([ln for ln in done.stderr.splitlines() if "Error" in ln][-1:] or [done.stderr.strip()[-200:]])[0]

    mine, engine = statistics.median(ours_s), statistics.median(engine_s)
    print(f"domainft validate (process): {mine * 1000:8.0f} ms  median of {len(ours_s)}  -> {ours}")
    print(f"llamafactory-cli train:      {engine * 1000:8.0f} ms  median of {len(engine_s)}  -> {theirs.strip()[:160]}")
    print(f"ratio: {engine / mine:.0f}x (target >= {TARGET}x)" + (f", with {load} busy processes" if load else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
