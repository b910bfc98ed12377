"""process.py, the one way domainft starts a subprocess: allowlisted environment, log tee, progress lines, the error
tail, and no child left running when domainft is interrupted, terminated or killed."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from domainft import process


def test_output_is_teed_split_on_carriage_returns_and_the_error_is_one_line(tmp_path):
    script = "import sys; print('a 1/3 [', end='\\r'); print('a 3/3 ['); print('ValueError: bad value', file=sys.stderr); sys.exit(3)"
    seen: list[str] = []
    done = process.run([sys.executable, "-c", script], env=process.clean_env(tmp_path), log_path=tmp_path / "x.log",
                       on_line=seen.append)
    assert done.returncode == 3
    assert seen == ["a 1/3 [", "a 3/3 [", "ValueError: bad value"]
    assert done.error() == "ValueError: bad value"
    log = (tmp_path / "x.log").read_bytes()  # raw: tqdm's \r kept
    assert log.startswith(f"\n$ {sys.executable} -c".encode()) and b"a 1/3 [\ra 3/3 [\n" in log


def test_only_allowlisted_variables_reach_a_child(tmp_path, monkeypatch):
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-secret")
    monkeypatch.setenv("PIP_INDEX_URL", "http://mirror.invalid/simple")
    show = [sys.executable, "-c", "import os; print(sorted(os.environ))"]
    names = process.run(show, env=process.clean_env(tmp_path), log_path=None).tail[-1]
    assert "ZHIPUAI_API_KEY" not in names and "PIP_INDEX_URL" not in names and "HF_HUB_OFFLINE" in names
    pip_names = process.run(show, env=process.clean_env(tmp_path, also=process.PIP_PASS_THROUGH), log_path=None).tail[-1]
    assert "PIP_INDEX_URL" in pip_names and "ZHIPUAI_API_KEY" not in pip_names


def test_input_and_timeout(tmp_path):
    echo = process.run([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], input_text="cfg",
                       env=process.clean_env(tmp_path), log_path=None)
    assert echo.tail == ["CFG"]
    started = time.monotonic()
    slow = process.run([sys.executable, "-c", "import time; time.sleep(60)"], env=process.clean_env(tmp_path),
                       log_path=None, timeout=1)
    assert slow.returncode == -signal.SIGTERM and time.monotonic() - started < 30


# A parent that runs a child which starts a grandchild (as torchrun starts workers); both write their pid.
PARENT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from domainft import process
    work = Path(sys.argv[1])
    child = ("import subprocess, sys, time; from pathlib import Path; w = Path(sys.argv[1]); "
             "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
             "(w / 'grandchild.pid').write_text(str(g.pid)); (w / 'child.pid').write_text(str(__import__('os').getpid())); "
             "(w / 'ready').write_text('ready'); time.sleep(300)")
    process.run([sys.executable, '-c', child, str(work)], env=process.clean_env(work), log_path=work / 'child.log')
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _wait_ended(pids: list[int], backstop: float = 300) -> list[int]:
    """Block until every pid has ended (a zombie counts as ended): each pidfd turns readable the moment its process
    exits, so this waits on the event itself. `backstop` only keeps a broken run from hanging CI; returns the pids
    still running then."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue  # already gone (and reaped)
    try:
        waiting = set(fds)
        deadline = time.monotonic() + backstop
        while waiting and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(list(waiting), [], [], left)
            waiting -= set(ready)
        return [fds[fd] for fd in waiting]
    finally:
        for fd in fds:
            os.close(fd)


def _default_sigint() -> None:
    """In the parent, before exec: Ctrl-C as a terminal delivers it. A shell without job control starts background
    jobs with SIGINT ignored, which Python then keeps ignoring (no KeyboardInterrupt), so the test would hang."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_no_child_outlives_domainft(how, tmp_path):
    """Ctrl-C (SIGINT) and SIGTERM end the child's whole process group; kill -9 of domainft alone (not its group)
    still ends the child, which the kernel signals when its parent dies."""
    ready = tmp_path / "ready"
    os.mkfifo(ready)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], stderr=subprocess.PIPE,
                              preexec_fn=_default_sigint)
    # The child writes the fifo after both pid files: wait for that, or for the parent to die first.
    fifo, parent_fd = os.open(ready, os.O_RDONLY | os.O_NONBLOCK), os.pidfd_open(parent.pid)
    try:
        readable, _, _ = select.select([fifo, parent_fd], [], [], 300)
        assert fifo in readable and os.read(fifo, 16) == b"ready", parent.stderr.read().decode(errors="replace")
    finally:
        os.close(fifo)
        os.close(parent_fd)
    child, grandchild = (int((tmp_path / f"{n}.pid").read_text()) for n in ("child", "grandchild"))
    parent.send_signal(getattr(signal, how))
    assert not _wait_ended([parent.pid]), f"domainft still running after {how}"
    parent.wait()
    gone = [child] if how == "SIGKILL" else [child, grandchild]
    try:
        assert not _wait_ended(gone), f"still running after {how}: {[p for p in gone if _alive(p)]}"
    finally:
        for pid in (child, grandchild):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
