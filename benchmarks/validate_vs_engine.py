"""How much sooner domainft's static validation rejects a misspelt engine key than the engine itself.

One run, two measurements on the same recipe (tiny model, demo coal QA, `engine_overrides: {lora_rnak: 8}`):
  1. `domainft.engines.validate(plan)`: in-process, no engine import;
  2. `llamafactory-cli train train.yaml` from the engine's venv with the same key in its YAML,
     timed until the process exits with its own error.
Target: ratio >= 20x. Usage: python benchmarks/validate_vs_engine.py  (builds the LLaMA-Factory venv if needed)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from domainft import render as R
from domainft.engines import ensure_engine, get_engine, validate
from domainft.engines.runner import base_env
from domainft.errors import UserError
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict

REPO = Path(__file__).resolve().parents[1]
TYPO = "lora_rnak"


def main() -> None:
    venv = ensure_engine("llamafactory")
    run_dir = Path(tempfile.mkdtemp(prefix="domainft-bench-"))
    base = {
        "name": "bench-validate",
        "engine": "llamafactory",
        "model": {"base": "embedded:tiny-random-llama"},
        "dataset": {"files": [str(REPO / "data" / "coal" / "demo_qa.jsonl")]},
        "training": {"max_steps": 1, "precision": "fp32"},
    }
    plan = make_plan(recipe_from_dict({**base, "engine_overrides": {TYPO: 8}}), run_dir=run_dir)

    validate(make_plan(recipe_from_dict(base), run_dir=run_dir))  # warm: snapshot JSON, templates
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        try:
            validate(plan)
            raise SystemExit("static validation accepted the misspelt key")
        except UserError as exc:
            runs.append(time.perf_counter() - start)
            ours = exc.one_line()
    static_s = min(runs)

    # The engine gets the same key in its own YAML (rendered without our check, as a by-hand user would).
    clean = make_plan(recipe_from_dict(base), run_dir=run_dir)
    files = get_engine("llamafactory").render(clean)
    config = yaml.safe_load(files["train.yaml"])
    config[TYPO] = 8
    files["train.yaml"] = yaml.safe_dump(config, sort_keys=False)
    R.write_tree(files, clean.render_dir)
    start = time.perf_counter()
    done = subprocess.run([str(venv / "bin" / "llamafactory-cli"), "train", str(clean.render_dir / "train.yaml")],
                          capture_output=True, text=True, env=base_env(run_dir, venv), cwd=clean.render_dir)
    engine_s = time.perf_counter() - start
    theirs = [ln for ln in done.stderr.splitlines() if "Error" in ln][-1:] or [done.stderr.strip()[-200:]]
    if done.returncode == 0:
        raise SystemExit("LLaMA-Factory accepted the misspelt key")

    print(f"domainft static validation: {static_s * 1000:8.1f} ms  -> {ours}")
    print(f"llamafactory-cli train:     {engine_s * 1000:8.1f} ms  -> {theirs[0].strip()[:160]}")
    print(f"ratio: {engine_s / static_s:.0f}x (target >= 20x)")


if __name__ == "__main__":
    sys.exit(main())
