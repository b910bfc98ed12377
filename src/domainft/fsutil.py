"""One way to write a file: whole or not at all.

Write to a temp file beside the target, fsync, then rename over it. A crash, kill -9 or full disk leaves
the old file (or none), never half of a new one; the temp file is removed on failure, and an OSError
becomes a one-line UserError naming the file. A temp file a killed process left behind carries its pid in its
name, and the next write of the same file removes it.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; give the result the permissions a plain open() would.
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | Path, data: str | bytes | Iterable[str]) -> Path:
    """Write text (UTF-8), bytes, or an iterable of text pieces to path atomically."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            elif isinstance(data, str):
                fh.write(data.encode("utf-8"))
            else:
                for piece in data:
                    fh.write(piece.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
        tmp = None
        _remove_orphans(path)
    except OSError as exc:
        raise UserError(f"cannot write ({exc.strerror or exc})", where=path) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


ORPHAN_AGE_S = 60  # a younger temp file may belong to a writer on another machine sharing this folder


def _remove_orphans(path: Path) -> None:
    """Remove `.NAME.<pid>.*.tmp` files whose writer is gone (killed between mkstemp and rename)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            if time.time() - tmp.stat().st_mtime > ORPHAN_AGE_S:
                tmp.unlink()
        except OSError:  # another writer removed it first, or it is not ours to remove
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def atomic_write_json(path: str | Path, value: Any) -> Path:
    return atomic_write(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    return atomic_write(path, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


@contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive lock between processes (flock on `path`), e.g. so two runs never build one venv at once."""
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
