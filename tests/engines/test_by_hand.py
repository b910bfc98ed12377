"""The rendered folder is the product: rendered, moved elsewhere, and trained and merged by the commands its own
README.md prints, verbatim, with nothing but the engine on PATH (no domainft in the process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import COAL_DOCS, bash_blocks, run_cli

from domainft.engines import NAMES as ENGINES
from domainft.engines.venv import ensure_engine
from domainft.engines.folder import write_folder
from domainft.errors import DataError

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_moved_folder_trains_and_merges_by_its_readme(engine, plan_for, tmp_path):
    from domainft.render import render_checked as validate

    from domainft.datagen import run_datagen
    from domainft.extract import extract_for_plan

    venv = ensure_engine(engine)
    # Tiny random Llama, 4 steps, on the demo coal QA and datagen's pairs from a few chunks, after 2 steps of
    # continued pre-training on those chunks' raw text (method.pretrain): the README's first command.
    plan = plan_for(engine, extract={"inputs": [str(COAL_DOCS)], "chunk_chars": 600, "overlap_chars": 60},
                    datagen={"provider": "extractive", "prompts": "coal", "max_chunks": 6,
                             "split": {"val": 0.0, "test": 0.0}},
                    method={"pretrain": {"max_steps": 2}})
    extract_for_plan(plan)
    run_datagen(plan, progress=False)
    rendered = tmp_path / "rendered"
    write_folder(plan, validate(plan), rendered)
    folder = shutil.move(str(rendered), tmp_path / "elsewhere" / "my-run")  # as if copied to the GPU machine
    folder = Path(folder)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    commands = bash_blocks(readme)
    assert commands, readme
    # Only the engine on PATH: the commands must not need domainft, its venv or the run folder.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LANG": "C.UTF-8"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(commands)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    # The adapter and the merged weights where the engine puts them inside the folder (output/, a checkpoint
    # under it, merged/ or output/merged/).
    assert "pretrain" in commands[0], commands[0]
    pretrained = [p.parent for p in (folder / "output-pretrain").rglob("adapter_config.json")]
    assert pretrained and all((a / "adapter_model.safetensors").exists() for a in pretrained)
    adapters = [p.parent for p in (folder / "output").rglob("adapter_config.json")]
    assert adapters and all(json.loads((a / "adapter_config.json").read_text())["peft_type"] == "LORA" for a in adapters)
    assert all((a / "adapter_model.safetensors").exists() for a in adapters)
    merged = [p.parent for p in folder.rglob("config.json") if p.parent.name == "merged"]
    assert len(merged) == 1 and list(merged[0].glob("*.safetensors")), merged
    assert not plan.train_dir.exists(), "the by-hand run wrote into the run folder"


def test_a_folder_never_points_at_missing_data(plan_for, tmp_path):
    """Rendering before datagen made the split it trains on: refused, naming the file and the command."""
    plan = plan_for("llamafactory", extract={"inputs": [str(tmp_path)]}, datagen={"provider": "extractive"})
    from domainft.render import render_checked as validate

    files = validate(plan)  # validation alone is fine before datagen
    with pytest.raises(DataError) as err:
        write_folder(plan, files, tmp_path / "out")
    assert err.value.where == str(plan.datagen_dir.resolve() / "train.jsonl")
    assert "domainft datagen" in err.value.one_line()
    assert not (tmp_path / "out").exists(), "nothing half-written"


def test_render_brings_the_data_up_to_date_first(tmp_path):
    """`domainft render -o` on a fresh checkout runs extract and datagen (offline teacher), then writes a folder
    whose every data path exists inside it."""
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "demo-coal-smollm2.yaml"
    out = tmp_path / "lf"
    result = run_cli("render", recipe, "-o", out, "--run-dir", tmp_path / "run")
    assert result.code == 0, result.stderr
    assert "datagen" in result.stderr and "cd " in result.stdout
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    for entry in info.values():
        assert not Path(entry["file_name"]).is_absolute()
        assert (out / entry["file_name"]).is_file()
    assert (tmp_path / "run" / "datagen" / "train.jsonl").read_bytes() == (out / "data" / "train.jsonl").read_bytes()
    again = run_cli("render", recipe, "-o", out, "--run-dir", tmp_path / "run")
    assert again.code == 0 and "datagen: up to date, skipped" in again.stderr and "written" not in again.stdout
