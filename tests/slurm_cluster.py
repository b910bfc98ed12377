"""A real one-node Slurm cluster on this host, for tests: Debian's slurm-wlm and munge (scripts/install.sh installs
them), started as root with a config, state and sockets in a temp folder and free ports, so it never touches a
cluster the host may already run. On the way out every job is cancelled and the daemons are stopped by their pids.
Import as `slurm_cluster`; the `slurm_cluster` fixture (tests/conftest.py) shares one per test session."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo")
MUNGE_KEY = Path("/etc/munge/munge.key")
PARTITION = "debug"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,) if p.exists()), None)


def unavailable() -> str | None:
    """Why a cluster cannot be started here, or None."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if _which(name) is None]
    if missing:
        return (f"Slurm is not installed (no {', '.join(missing)}): scripts/install.sh installs Debian's slurm-wlm "
                f"and munge as root or with sudo")
    if os.geteuid() != 0:
        return "starting slurmd and munged needs root"
    if not MUNGE_KEY.exists():
        return f"no {MUNGE_KEY} (the munge package makes it)"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip with the reason; under CI a missing cluster is a failure, as the browser test treats Chromium."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class Cluster:
    folder: Path
    conf: Path
    partition: str = PARTITION

    @property
    def env(self) -> dict[str, str]:
        """What Slurm's client commands need besides the usual environment."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout)

    def jobs(self) -> list[str]:
        """Ids of every job the cluster still queues or runs."""
        return self.run("squeue", "--noheader", "--format=%i").stdout.split()

    def wait_gone(self, job: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while job in self.jobs():
            assert time.monotonic() < deadline, f"job {job} still there after {timeout} s"
            time.sleep(1)

    def state(self, job: str) -> str:
        """JobState of a job that ended (scontrol keeps it for MinJobAge)."""
        found = re.search(r"JobState=(\S+)", self.run("scontrol", "--oneliner", "show", "job", job).stdout)
        return found.group(1) if found else ""

    def job_processes(self, job: str) -> list[int]:
        """Pids of processes that run as part of the job (SLURM_JOB_ID in their environment)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with suppress(OSError):
                if f"SLURM_JOB_ID={job}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
        return pids


def _config(folder: Path, node_line: str) -> str:
    host = socket.gethostname().split(".")[0]
    return "\n".join([
        "ClusterName=domainft-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={folder / 'munge.sock'}",
        # No cgroups, no accounting daemon: what a plain host (or container) offers.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/builtin",
        "MpiDefault=none",
        "ReturnToService=2",
        "KillWait=5",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _node_line() -> str:
    """This host as slurmd sees it (`slurmd -C`), less its memory (which may shift and would drain the node)."""
    found = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, timeout=60).stdout
    line = next(ln for ln in found.splitlines() if ln.startswith("NodeName="))
    return re.sub(r"\s*RealMemory=\S+", "", line)


@contextmanager
def one_node_cluster(folder: Path) -> Iterator[Cluster]:
    """munged, slurmctld and slurmd in the foreground, each a child of this process; the cluster once its node is
    idle. Raises RuntimeError (with the daemons' log tails) when it does not come up."""
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    cluster = Cluster(folder, folder / "slurm.conf")
    cluster.conf.write_text(_config(folder, _node_line()))
    daemons: list[subprocess.Popen] = []

    def start(*argv: str) -> None:
        out = open(folder / f"{Path(argv[0]).name}.out", "ab")  # noqa: SIM115 (closed with the process)
        daemons.append(subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env={**os.environ, **cluster.env}))
        out.close()

    try:
        # As root munged needs --force; its socket is this cluster's own.
        start(_which("munged"), "--foreground", "--force", f"--socket={folder / 'munge.sock'}",
              f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
              f"--seed-file={folder / 'munged.seed'}")
        _wait(lambda: (folder / "munge.sock").exists(), "munged's socket", folder)
        start(_which("slurmctld"), "-D", "-f", str(cluster.conf))
        start(_which("slurmd"), "-D", "-f", str(cluster.conf))
        _wait(lambda: cluster.run("sinfo", "--noheader", "--format=%T").stdout.strip() == "idle",
              "the node to be idle", folder)
        yield cluster
    finally:
        with suppress(Exception):
            for job in cluster.jobs():
                cluster.run("scancel", job)
            deadline = time.monotonic() + 120
            while cluster.jobs() and time.monotonic() < deadline:
                time.sleep(1)
        for proc in reversed(daemons):  # slurmd, slurmctld, then munged
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait(ready, what: str, folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            logs = " | ".join(f"{p.name}: {p.read_text(errors='replace')[-400:]}" for p in sorted(folder.glob("*.log")))
            raise RuntimeError(f"no {what} after {timeout} s: {logs}")
        time.sleep(0.5)
