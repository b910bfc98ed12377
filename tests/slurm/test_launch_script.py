"""launch.sbatch without a cluster: bash parses it, recipe values cannot break out of its `#SBATCH` lines, the
`--launcher` flag is the recipe key, and how a job ended is read back when scontrol and sacct say nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import DATA, assert_one_line_error, run_cli, tiny_recipe_data

from domainft.engines import NAMES as ENGINES
from domainft.engines.cluster import SCRIPT
from domainft.engines.slurm import JobEnd, first_failed_node, job_end
from domainft.errors import RecipeError
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict
from domainft.render import render

DEMO_QA = DATA / "coal" / "demo_qa.jsonl"


def plan(tmp_path: Path, engine: str = "llamafactory", **distributed):
    data = tiny_recipe_data("t-slurm", engine, [DEMO_QA], max_steps=3, save_steps=100, distributed=distributed)
    return make_plan(recipe_from_dict(data), run_dir=tmp_path / "run")


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_bash_parses_each_engine_s_script(engine, tmp_path):
    files = render(plan(tmp_path, engine, launcher="slurm", nnodes=2))
    script = tmp_path / SCRIPT
    script.write_text(files[SCRIPT])
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    # sbatch reads #SBATCH lines only before the first command
    head = files[SCRIPT].split("\nset -euo pipefail", 1)[0]
    assert "--ntasks-per-node=1" in head and "--nodes=2" in head


def test_the_local_launcher_renders_no_script(tmp_path):
    assert SCRIPT not in render(plan(tmp_path))


@pytest.mark.parametrize("key,value", [
    ("sbatch_lines", ["--exclusive\nrm -rf ~"]),
    ("sbatch_lines", ["exclusive"]),
    ("partition", "gpu\n#SBATCH --account=other"),
    ("account", "lab;reboot"),
    ("time_limit", "soon"),
])
def test_values_that_would_break_out_of_an_sbatch_line_are_refused(tmp_path, key, value):
    with pytest.raises(RecipeError) as err:
        plan(tmp_path, launcher="slurm", slurm={key: value})
    assert f"distributed.slurm.{key}" in err.value.one_line() and "\n" not in err.value.one_line()


@pytest.mark.parametrize("limit", ["30", "04:00:00", "2-00:00:00", "1-12", "UNLIMITED"])
def test_slurm_s_time_formats_are_taken(tmp_path, limit):
    files = render(plan(tmp_path, launcher="slurm", slurm={"time_limit": limit}))
    assert f"#SBATCH --time={limit}\n" in files[SCRIPT]


def test_the_launcher_flag_is_the_recipe_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\ndataset: {{files: [{DEMO_QA}]}}\n")
    assert_one_line_error(run_cli("train", recipe, "--launcher", "slurn"), "distributed.launcher", "did you mean 'slurm'")


def test_without_scontrol_and_sacct_the_script_s_exit_file_says_how_the_job_ended(tmp_path):
    no_slurm = {"PATH": str(tmp_path)}  # neither command can start
    logs = tmp_path / "logs" / "7"
    assert job_end("7", tmp_path, no_slurm) == JobEnd("UNKNOWN")
    logs.mkdir(parents=True)
    (logs / "exit").write_text("0\n")
    assert job_end("7", tmp_path, no_slurm) == JobEnd("COMPLETED", 0)
    (logs / "exit").write_text("137\n")
    assert job_end("7", tmp_path, no_slurm) == JobEnd("FAILED", 137)


def test_the_failing_node_is_the_first_to_exit_non_zero(tmp_path):
    import os

    for rank, code, when in ((0, 143, 30), (1, 1, 10), (2, 0, 5)):
        path = tmp_path / f"node-{rank}.exit"
        path.write_text(f"{code}\n")
        os.utime(path, (when, when))
    assert first_failed_node(tmp_path) == (1, 1)
    assert first_failed_node(tmp_path / "none") is None
