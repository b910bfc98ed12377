"""The run's lineage record: which inputs, parameters and versions produced which file.

`manifest.json` in the run folder holds, per stage, the sha256 of every input and output, the hash of
the recipe values the stage reads, timings and status. A stage is up to date when all of those still
match; checks go cheapest first (params, then sizes and mtimes, then hashes), as DVC does.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import UserError
from .fsutil import atomic_write_json

MANIFEST = "manifest.json"
VERSIONED_PACKAGES = (
    "domainft", "torch", "transformers", "peft", "lm-eval", "llama-cpp-python", "gguf", "pydantic",
)


def sha256_file(path: Path, _cache: dict[tuple[str, int, int], str] = {}) -> str:  # noqa: B006 - memo
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _cache[key] = digest.hexdigest()
    return _cache[key]


def sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def files_under(paths: list[Path]) -> list[Path]:
    """Every regular file under the given files/folders, sorted, hidden files skipped."""
    found: set[Path] = set()
    for path in paths:
        if path.is_file():
            found.add(path.resolve())
        elif path.is_dir():
            for sub in path.rglob("*"):
                if sub.is_file() and not any(part.startswith(".") for part in sub.relative_to(path).parts):
                    found.add(sub.resolve())
    return sorted(found)


@dataclass
class FileRecord:
    sha256: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileRecord:
        stat = path.stat()
        return cls(sha256=sha256_file(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns)

    def matches(self, path: Path) -> bool:
        try:
            stat = path.stat()
        except OSError:
            return False
        if stat.st_size != self.size:
            return False
        if stat.st_mtime_ns == self.mtime_ns:
            return True
        return sha256_file(path) == self.sha256


@dataclass
class StageRecord:
    status: str = "pending"  # pending | running | done | failed
    params_hash: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, FileRecord] = field(default_factory=dict)
    outputs: dict[str, FileRecord] = field(default_factory=dict)
    started_at: float | None = None
    seconds: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "params_hash": self.params_hash,
            "params": self.params,
            "inputs": {k: vars(v) for k, v in self.inputs.items()},
            "outputs": {k: vars(v) for k, v in self.outputs.items()},
            "started_at": self.started_at,
            "seconds": self.seconds,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageRecord:
        return cls(
            status=data.get("status", "pending"),
            params_hash=data.get("params_hash", ""),
            params=data.get("params", {}),
            inputs={k: FileRecord(**v) for k, v in data.get("inputs", {}).items()},
            outputs={k: FileRecord(**v) for k, v in data.get("outputs", {}).items()},
            started_at=data.get("started_at"),
            seconds=data.get("seconds"),
            error=data.get("error"),
        )


class Manifest:
    """Read-modify-write of run_dir/manifest.json; every save is atomic."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / MANIFEST
        self.data: dict[str, Any] = {}
        self.stages: dict[str, StageRecord] = {}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise UserError(f"manifest is corrupt ({exc}); delete it to start the run afresh", where=self.path) from None
            self.stages = {k: StageRecord.from_json(v) for k, v in self.data.get("stages", {}).items()}

    def rel(self, path: Path) -> str:
        """Paths inside the run folder are stored relative to it; others absolute."""
        path = path.resolve()
        try:
            return str(path.relative_to(self.run_dir.resolve()))
        except ValueError:
            return str(path)

    def abs(self, key: str) -> Path:
        path = Path(key)
        return path if path.is_absolute() else self.run_dir / path

    def stage(self, name: str) -> StageRecord:
        return self.stages.setdefault(name, StageRecord())

    def save(self) -> None:
        self.data["stages"] = {k: v.to_json() for k, v in self.stages.items()}
        self.data["updated_at"] = time.time()
        atomic_write_json(self.path, self.data)

    def producer_of(self, path: Path) -> tuple[str, StageRecord] | None:
        key = self.rel(path)
        for name, record in self.stages.items():
            if key in record.outputs:
                return name, record
        return None


def package_versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    versions.update(extra or {})
    return versions


def find_manifest(path: Path) -> Path | None:
    """The manifest of the run folder that holds `path` (a file or the run folder itself)."""
    path = path.resolve()
    for folder in [path, *path.parents]:
        candidate = folder / MANIFEST
        if candidate.is_file():
            return candidate
    return None
