"""Training through a real Slurm: the one-node cluster the `slurm_cluster` fixture starts (Debian's slurm-wlm and
munge), two tasks standing in for two nodes (gloo on CPU, as the loopback test in tests/distributed does).
`domainft train` submits the rendered launch.sbatch and follows the job; the rendered folder also trains by its
README's sbatch command with nothing but the engine on PATH. Bad input and faults end in one line, with nothing
left running."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import DATA, CliResult, assert_one_line_error, bash_blocks, run_cli, tiny_recipe_data
from slurm_cluster import free_port

from domainft.engines.venv import ensure_engine

pytestmark = pytest.mark.e2e
DEMO_QA = DATA / "coal" / "demo_qa.jsonl"
# The one-node cluster's stand-in for two nodes: options after launch.sbatch's own #SBATCH lines win.
TWO_TASKS_ON_ONE_NODE = ["--nodes=1", "--ntasks-per-node=2"]
SLURM = {"launcher": "slurm", "nnodes": 2, "slurm": {"sbatch_lines": TWO_TASKS_ON_ONE_NODE}}


@pytest.fixture(scope="module", autouse=True)
def _engine():
    ensure_engine("llamafactory")


def write_recipe(path: Path, max_steps: int = 3, **distributed) -> Path:
    data = tiny_recipe_data("t-slurm", "llamafactory", [DEMO_QA], max_steps=max_steps, save_steps=100,
                            distributed={"master_port": free_port(), **distributed})
    path.write_text(yaml.safe_dump(data))
    return path


def job_folder(render_dir: Path) -> Path:
    """logs/<job id>/ of the one job submitted from a rendered folder."""
    (found,) = [p for p in (render_dir / "logs").iterdir() if p.is_dir()]
    return found


def adapter(train_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(train_dir / "adapter_model.safetensors")


def test_two_tasks_through_sbatch_train_the_adapter_two_local_processes_train(tmp_path, slurm_cluster):
    result = run_cli("train", write_recipe(tmp_path / "slurm.yaml", **SLURM), "--run-dir", tmp_path / "on-slurm",
                     env=slurm_cluster.env)
    assert result.code == 0, result.stderr[-3000:]
    folder = tmp_path / "on-slurm" / "render" / "llamafactory"
    logs = job_folder(folder)
    assert slurm_cluster.state(logs.name) == "COMPLETED" and slurm_cluster.jobs() == []
    host = socket.gethostname().split(".")[0]  # the job's only node: the rendezvous address from its node list
    for rank in (0, 1):
        log = (logs / f"node-{rank}.log").read_text(errors="replace")
        assert f"num nodes: 2, node rank: {rank}" in log and f"Initializing 1 distributed tasks at: {host}:" in log
        assert f"Process rank: {rank}, world size: 2, device: cpu" in log
        assert (logs / f"node-{rank}.exit").read_text().strip() == "0"
    assert "steps" in result.stderr + result.stdout  # the progress bar, fed from node 0's log

    local = write_recipe(tmp_path / "local.yaml", nproc_per_node=2)
    result = run_cli("train", local, "--run-dir", tmp_path / "here")
    assert result.code == 0, result.stderr[-3000:]
    on_slurm, here = adapter(tmp_path / "on-slurm" / "train" / "llamafactory"), adapter(tmp_path / "here" / "train" / "llamafactory")
    assert set(on_slurm) == set(here)
    assert any(float(t.abs().sum()) > 0 for name, t in here.items() if "lora_B" in name)  # trained: B starts at 0
    for name, tensor in here.items():
        assert (on_slurm[name] - tensor).abs().max() <= 1e-6, name


def test_the_rendered_folder_trains_on_slurm_by_its_readme(tmp_path, slurm_cluster):
    """The folder's README sbatch command, verbatim, from a moved folder with only the engine on PATH."""
    venv = ensure_engine("llamafactory")
    recipe = write_recipe(tmp_path / "recipe.yaml", **SLURM)
    result = run_cli("render", recipe, "-o", tmp_path / "rendered", "--run-dir", tmp_path / "run")
    assert result.code == 0, result.stderr
    assert "sbatch launch.sbatch" in result.stdout
    folder = Path(shutil.move(tmp_path / "rendered", tmp_path / "shared" / "my-run"))
    (block,) = [b for b in bash_blocks((folder / "README.md").read_text(encoding="utf-8")) if "sbatch" in b]
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "LANG": "C.UTF-8", **slurm_cluster.env}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = re.search(r"Submitted batch job (\d+)", proc.stdout).group(1)
    slurm_cluster.wait_gone(job)
    assert slurm_cluster.state(job) == "COMPLETED", (folder / f"slurm-{job}.out").read_text(errors="replace")
    assert (folder / "output" / "adapter_model.safetensors").exists()
    assert {p.name for p in (folder / "logs" / job).iterdir()} == {"exit", "node-0.log", "node-0.exit", "node-1.log",
                                                                   "node-1.exit"}
    assert not (tmp_path / "run" / "train").exists(), "by hand, nothing trains in the run folder"


def test_an_unknown_partition_is_sbatch_s_error_in_one_line(tmp_path, slurm_cluster):
    recipe = write_recipe(tmp_path / "recipe.yaml", **SLURM)
    result = run_cli("train", recipe, "--run-dir", tmp_path / "run", "-s", "distributed.slurm.partition=nosuch",
                     env=slurm_cluster.env)
    assert_one_line_error(result, "distributed.slurm.partition", "Invalid partition", "nosuch")
    assert slurm_cluster.jobs() == []


def test_without_sbatch_the_slurm_launcher_is_one_line(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with Python but no Slurm
    bin_dir.mkdir()
    result = run_cli("train", write_recipe(tmp_path / "recipe.yaml", **SLURM), "--run-dir", tmp_path / "run",
                     env={"PATH": str(bin_dir)})
    assert_one_line_error(result, "distributed.launcher", "no sbatch")
    assert not (tmp_path / "run" / "train" / "llamafactory" / "adapter_model.safetensors").exists()


def start_training(tmp_path: Path, cluster) -> tuple[subprocess.Popen, str, Path]:
    """`domainft train` through Slurm on a run long enough to be stopped: (its process, the job id, the job's
    log folder), once both tasks' training processes are up."""
    recipe = write_recipe(tmp_path / "recipe.yaml", max_steps=2000, **SLURM)
    proc = subprocess.Popen([sys.executable, "-m", "domainft.cli", "train", str(recipe), "--run-dir",
                             str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200", **cluster.env})
    logs = tmp_path / "run" / "render" / "llamafactory" / "logs"
    deadline = time.monotonic() + 300
    while not all(f"Process rank: {r}," in _read(logs, f"node-{r}.log") for r in (0, 1)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    return proc, job_folder(logs.parent).name, job_folder(logs.parent)


def _read(logs: Path, name: str) -> str:
    found = list(logs.glob(f"*/{name}"))
    return found[0].read_text(errors="replace") if found else ""


def assert_nothing_left(cluster, job: str) -> None:
    deadline = time.monotonic() + 60
    while cluster.job_processes(job) and time.monotonic() < deadline:
        time.sleep(1)
    assert job not in cluster.jobs()
    assert cluster.job_processes(job) == []


def _worker(cluster, job: str, rank: int) -> int:
    """The training process torchrun started on the task of this rank."""
    for pid in cluster.job_processes(job):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"SLURM_PROCID={rank}".encode() in environ and any(v.startswith(b"LOCAL_RANK=") for v in environ):
            return pid
    raise AssertionError(f"no training process of rank {rank} in job {job}")


def test_a_node_that_dies_fails_the_run_in_one_line_naming_it_and_nothing_is_left(tmp_path, slurm_cluster):
    proc, job, logs = start_training(tmp_path, slurm_cluster)
    os.kill(_worker(slurm_cluster, job, 1), signal.SIGKILL)  # as the kernel's OOM killer would
    out, err = proc.communicate(timeout=300)
    assert_one_line_error(CliResult(proc.returncode, out, err), f"slurm job {job} failed on node 1", str(logs / "node-1.log"))
    assert "  node 1 | " in err  # its last lines, before the error
    assert_nothing_left(slurm_cluster, job)


def test_ctrl_c_cancels_the_job(tmp_path, slurm_cluster):
    proc, job, _ = start_training(tmp_path, slurm_cluster)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert f"cancelled slurm job {job}" in err and "Traceback" not in err
    assert slurm_cluster.state(job) == "CANCELLED"
    assert_nothing_left(slurm_cluster, job)
