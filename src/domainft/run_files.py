"""The files of a run folder, one reader and one writer per format.

    export.json        read_export_record / write_export_record: what the export made
    *.jsonl (whole)    read_jsonl / iter_jsonl, written whole by fsutil.atomic_write_jsonl
    *.jsonl (journal)  AppendJournal: appended one record at a time, each line fsync'd before append() returns

manifest.json has its own home (manifest.Manifest).

A journal is never rewritten in place: a kill -9 can at worst leave a torn last line (a record half written).
Readers take only the lines that end in a newline (the committed ones), and the next writer cuts the torn piece off
(`repair`) so its first record starts on a fresh line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import DataError, UserError
from .fsutil import atomic_write

EXPORT_JSON = "export.json"


# ---------------------------------------------------------------- export.json


def read_export_record(export_dir: Path) -> dict[str, Any] | None:
    """What the last export wrote (files, sizes, sha256, seconds), or None when no export ran."""
    path = Path(export_dir) / EXPORT_JSON
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"not an export record ({exc})", where=path, hint="run the export again (--force)") from None


def write_export_record(export_dir: Path, record: dict[str, Any]) -> Path:
    return atomic_write(Path(export_dir) / EXPORT_JSON, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------- JSONL read whole


def iter_jsonl(path: str | Path, *, what: str = "a JSON line") -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line; a line that is not JSON is a one-line DataError naming
    `file:line` ('not <what> (...)')."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise DataError(f"not {what} ({exc})", where=f"{path}:{number}") from None
            yield number, value


def read_jsonl(path: str | Path, *, missing_ok: bool = False, skip_bad: bool = False) -> list[Any]:
    """Every value of a JSONL file, blank lines skipped; [] for a missing file when `missing_ok`. A line that is not
    JSON is a one-line DataError naming `file:line`; with `skip_bad` it is passed over (a file a writer is still
    at, or was killed in) and only JSON objects are kept."""
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    if not skip_bad:
        return [value for _, value in iter_jsonl(path)]
    with open(path, encoding="utf-8") as fh:
        return _objects(fh)


def _objects(lines: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """The lines that are JSON objects; any other line is passed over."""
    out = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


# ---------------------------------------------------------------- JSONL appended record by record


class AppendJournal:
    """An append-only JSONL file: each record one line, written with one write() and fsync'd (and the file's name,
    when the append created it) before append() returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def committed(self, limit_bytes: int | None = None) -> list[tuple[int, bytes]]:
        """(line number, line) of every line that ends in a newline; the piece after the last one is a torn
        record, not yet committed."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            data = fh.read() if limit_bytes is None else fh.read(limit_bytes)
        return list(enumerate(data.split(b"\n")[:-1], 1))

    def records(self) -> list[dict[str, Any]]:
        """The committed lines that are JSON objects, in order (any other line is passed over)."""
        return _objects(line for _, line in self.committed())

    def repair(self) -> None:
        """Cut a torn last line so the next append starts on a fresh line."""
        if not self.path.exists():
            return
        with open(self.path, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            fh.seek(0)
            fh.truncate(fh.read().rfind(b"\n") + 1)

    def append(self, record: Any) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            if self._fd is None:
                self.open()
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError as exc:
            raise UserError(f"cannot write ({exc.strerror or exc})", where=self.path) from None

    def open(self) -> AppendJournal:
        """Open (and create) the file for appending; append() does it when nobody did."""
        if self._fd is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            if created:  # the new file's name must survive a crash too
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except OSError as exc:
            raise UserError(f"cannot write ({exc.strerror or exc})", where=self.path) from None
        return self

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AppendJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
