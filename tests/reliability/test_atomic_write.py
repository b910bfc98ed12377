"""atomic_write under kill -9: the target stays whole, and the temp file the killed writer left is removed by
the next write of the same file (not while its writer may still be alive)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from domainft.fsutil import ORPHAN_AGE_S, atomic_write

WRITER = """
import sys, time
from domainft.fsutil import atomic_write
def pieces():
    yield "half of a new file\\n"
    print("writing", flush=True)
    time.sleep(60)
    yield "never written\\n"
atomic_write(sys.argv[1], pieces())
"""


def _orphans(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.*.tmp"))


def test_killed_writer_leaves_the_old_file_and_the_next_write_sweeps_its_temp(tmp_path: Path):
    target = tmp_path / "report.json"
    atomic_write(target, "old\n")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.read_text() == "old\n"
    (orphan,) = _orphans(target)
    assert f".{proc.pid}." in orphan.name

    atomic_write(target, "new\n")  # a young orphan may be a writer on another machine: kept
    assert _orphans(target) == [orphan]
    old = time.time() - ORPHAN_AGE_S - 1
    os.utime(orphan, (old, old))
    atomic_write(target, "newer\n")
    assert target.read_text() == "newer\n" and _orphans(target) == []


def test_a_live_writers_temp_file_is_left_alone(tmp_path: Path):
    target = tmp_path / "x.jsonl"
    live = tmp_path / f".x.jsonl.{os.getpid()}.abc123.tmp"  # this process is alive
    other = tmp_path / ".x.jsonl.old.tmp"  # not ours: no pid in the name
    for path in (live, other):
        path.write_text("in progress")
        os.utime(path, (0, 0))
    atomic_write(target, "{}\n")
    assert live.exists() and other.exists()
