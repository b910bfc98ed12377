"""Files and folders -> chunks, skipping (with a one-line reason) whatever cannot be read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError
from ..recipe import ExtractConfig
from .chunks import Chunk, ExtractResult, FileStat, Skipped, build_chunks, write_chunks
from .readers import READERS, Unreadable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from ..plan import Plan

# Repository paperwork that sits beside documents in many corpora; not domain text.
_PAPERWORK = ("README", "LICENSE", "LICENCE", "COPYING", "CHANGELOG", "NOTICE")


def title_from_name(name: str) -> str:
    """'19-中华人民共和国矿山安全法.txt' -> '中华人民共和国矿山安全法' (also odd names like 'x.txt-zxq.txt')."""
    stem = name.split(".")[0] if not name.startswith(".") else name
    return re.sub(r"^\d+[-_ ]+", "", stem).strip(" 《》") or stem


def _walk(inputs: list[Path]) -> list[tuple[Path, str]]:
    """(path, name recorded in provenance): the path relative to the folder given, or the file's name."""
    found: list[tuple[Path, str]] = []
    for item in inputs:
        item = Path(item).expanduser()
        if not item.exists():
            raise DataError("input not found", where=item)
        if item.is_file():
            found.append((item, item.name))
            continue
        for path in sorted(item.rglob("*")):
            relative = path.relative_to(item)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                found.append((path, relative.as_posix()))
    return found


_DEFAULTS = ExtractConfig()  # defaults live in the recipe schema only


def extract_inputs(inputs: list[Path], chunk_chars: int = _DEFAULTS.chunk_chars,
                   overlap_chars: int = _DEFAULTS.overlap_chars,
                   max_file_mb: float = _DEFAULTS.max_file_mb) -> ExtractResult:
    """Extract every file under `inputs`; a bad file is skipped with its reason and the run goes on."""
    if overlap_chars >= chunk_chars:
        raise DataError("overlap_chars must be smaller than chunk_chars", where="extract.overlap_chars")
    result = ExtractResult()
    seen: set[str] = set()
    for path, name in _walk(inputs):
        if name in seen:  # the same file reached through two inputs
            continue
        seen.add(name)
        suffix = path.suffix.lower()
        if path.name.upper().startswith(_PAPERWORK):
            result.skipped.append(Skipped(name, "repository paperwork (README/LICENSE), not a document"))
            continue
        reader = READERS.get(suffix)
        if reader is None:
            kinds = ", ".join(sorted({k.lstrip(".") for k in READERS if k != ".doc"}))
            result.skipped.append(Skipped(name, f"unsupported file type '{suffix or path.name}' (reads {kinds})"))
            continue
        try:
            size = path.stat().st_size
            if size == 0:
                raise Unreadable("empty file")
            if size > max_file_mb * 1e6:
                # A regulation is kilobytes; tens of MB is a dump or a wrong file, and would stall the run.
                raise Unreadable(f"too large ({size / 1e6:.1f} MB > extract.max_file_mb {max_file_mb:g})")
            doc, encoding = reader(path)
            if not doc.text.strip():
                raise Unreadable("no text in file")
        except Unreadable as exc:
            result.skipped.append(Skipped(name, str(exc)))
            continue
        except Exception as exc:  # a reader library choking on one file must not stop the corpus
            first = (str(exc).splitlines() or [""])[0][:100]
            result.skipped.append(Skipped(name, f"cannot read ({type(exc).__name__}: {first})"))
            continue
        doc.title = doc.title or title_from_name(path.name)
        chunks = build_chunks(doc, name, chunk_chars, overlap_chars)
        result.chunks.extend(chunks)
        result.files.append(FileStat(name, suffix.lstrip("."), encoding, len(doc.text), len(chunks)))
    return result


def extract_for_plan(plan: Plan) -> ExtractResult:
    """Extract the recipe's `extract.inputs` into plan.extract_dir/chunks.jsonl (atomically)."""
    cfg = plan.recipe.extract
    if not cfg.inputs:
        raise DataError("no documents to extract: set extract.inputs", where="extract.inputs")
    result = extract_inputs(plan.document_inputs, cfg.chunk_chars, cfg.overlap_chars, cfg.max_file_mb)
    if not result.chunks:
        reasons = "; ".join(f"{s.file}: {s.reason}" for s in result.skipped[:3])
        raise DataError(f"no text extracted from any input{f' ({reasons})' if reasons else ''}", where="extract.inputs")
    write_chunks(result, plan.extract_dir / "chunks.jsonl")
    return result


def extract_table(result: ExtractResult) -> Table:
    """Chunks per file, then the skipped files with their reasons."""
    from rich.table import Table

    table = Table(title=f"{len(result.chunks)} chunks from {len(result.files)} files", title_justify="left")
    for column, justify in (("file", "left"), ("format", "left"), ("chars", "right"), ("chunks", "right"), ("note", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for stat in result.files:
        note = "" if stat.encoding in ("utf-8", stat.format) else f"encoding {stat.encoding}"
        table.add_row(stat.file, stat.format, f"{stat.chars:,}", str(stat.chunks), note)
    for skip in result.skipped:
        table.add_row(skip.file, Path(skip.file).suffix.lstrip("."), "", "[yellow]skipped[/]", skip.reason)
    return table


def print_extract_table(result: ExtractResult, console: Console | None = None) -> None:
    from rich.console import Console

    (console or Console()).print(extract_table(result))


__all__ = ["Chunk", "ExtractResult", "extract_for_plan", "extract_inputs", "extract_table", "print_extract_table"]
