"""Sections -> chunks of about `chunk_chars`, cut at sentence ends, with provenance.

Small sibling sections (articles of one chapter) are packed together; a long section is cut at
sentence boundaries (Chinese 。！？； and Latin . ! ?) with whole sentences carried over as overlap.
A chunk's text is always exactly `document_text[start:end]`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DataError
from ..fsutil import atomic_write_jsonl
from ..run_files import iter_jsonl
from .structure import Doc, Section, is_title_like

# A sentence ends after CJK terminal punctuation, or Latin .!? before whitespace; a line break always ends one.
_SENTENCE_END = re.compile(r"[。！？；!?][”’」』）)\"']*|\.(?=\s)|\n")
_SOFT_END = re.compile(r"[，、,：:]\s*|\s+")


@dataclass(frozen=True)
class Chunk:
    id: str
    file: str
    heading_path: list[str]
    start: int
    end: int
    text: str
    title: str = ""  # the document's title (first line, docx Title, HTML <title>), for questions

    @staticmethod
    def make(file: str, heading_path: list[str], start: int, text: str, title: str = "") -> Chunk:
        # Content hash over provenance too, so one paragraph repeated in two places keeps two ids.
        digest = hashlib.sha256(json.dumps([file, start, text], ensure_ascii=False).encode()).hexdigest()[:16]
        return Chunk(digest, file, list(heading_path), start, start + len(text), text, title)


@dataclass
class FileStat:
    file: str
    format: str
    encoding: str
    chars: int
    chunks: int


@dataclass
class Skipped:
    file: str
    reason: str


@dataclass
class ExtractResult:
    chunks: list[Chunk] = field(default_factory=list)
    files: list[FileStat] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _boundaries(text: str, lo: int, hi: int, pattern: re.Pattern[str]) -> list[int]:
    return [m.end() for m in pattern.finditer(text, lo, hi)]


def split_span(text: str, lo: int, hi: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Cut text[lo:hi] into spans of at most `size` chars at sentence ends, consecutive spans sharing
    whole trailing sentences of at most `overlap` chars. Cuts inside a sentence only when one
    sentence alone exceeds `size` (then at a comma or space, else hard)."""
    if hi - lo <= size:
        return [(lo, hi)]
    hard = _boundaries(text, lo, hi, _SENTENCE_END)
    soft = _boundaries(text, lo, hi, _SOFT_END)
    spans: list[tuple[int, int]] = []
    start = lo
    while True:
        start = _skip_space(text, start, hi)
        if hi - start <= size:
            spans.append((start, _trim_end(text, start, hi)))
            return spans
        limit = start + size
        end = _last_before(hard, start, limit) or _last_before(soft, start, limit) or limit
        spans.append((start, _trim_end(text, start, end)))
        nxt = end
        if overlap:
            back = _first_after(hard, max(start + 1, end - overlap), end)
            if back is not None and back < end:
                nxt = back
        start = nxt


def _last_before(points: list[int], lo: int, hi: int) -> int | None:
    best = None
    for p in points:
        if lo < p <= hi:
            best = p
        elif p > hi:
            break
    return best


def _first_after(points: list[int], lo: int, hi: int) -> int | None:
    for p in points:
        if lo <= p <= hi:
            return p
    return None


def _skip_space(text: str, pos: int, hi: int) -> int:
    while pos < hi and text[pos].isspace():
        pos += 1
    return pos


def _trim_end(text: str, lo: int, end: int) -> int:
    while end > lo and text[end - 1].isspace():
        end -= 1
    return end


def _has_body(text: str) -> bool:
    """False for nothing but one short title line (a repeated document title, a bare sub-heading)."""
    lines = [line for line in text.split("\n") if line.strip()]
    return len(lines) > 1 or (bool(lines) and ("|" in lines[0] or not is_title_like(lines[0])))


def build_chunks(doc: Doc, file: str, chunk_chars: int, overlap_chars: int) -> list[Chunk]:
    text = doc.text
    # Sections with a body (pure titles such as "第二章 矿山建设" add only to the heading path).
    sections = [s for s in doc.sections if _has_body(text[s.body_start : s.end])]
    chunks: list[Chunk] = []
    group: list[Section] = []

    def emit_group() -> None:
        if not group:
            return
        first, last = group[0], group[-1]
        if len(group) == 1:
            path = list(first.path)
        else:
            # Packed siblings: the shared parent, then "first – last" of their own headings.
            parent = list(first.path[:-1])
            labels = [s.path[-1] for s in (first, last) if s.path]
            path = parent + ([f"{labels[0]} – {labels[-1]}"] if labels else [])
        start, end = _skip_space(text, first.start, last.end), _trim_end(text, first.start, last.end)
        chunks.append(Chunk.make(file, path, start, text[start:end], doc.title))
        group.clear()

    for section in sections:
        length = section.end - section.start
        if length > chunk_chars:
            emit_group()
            for lo, hi in split_span(text, section.start, section.end, chunk_chars, overlap_chars):
                if text[lo:hi].strip():
                    chunks.append(Chunk.make(file, list(section.path), lo, text[lo:hi], doc.title))
            continue
        if group and (
            section.path[:-1] != group[0].path[:-1]
            or bool(section.path) != bool(group[0].path)  # untitled lead-in text stays apart
            or section.end - group[0].start > chunk_chars
        ):
            emit_group()
        group.append(section)
    emit_group()
    return chunks


# ------------------------------------------------------------------ JSONL


def write_chunks(result: ExtractResult, path: str | Path) -> Path:
    """chunks.jsonl, written atomically (temp file + rename): never half-written."""
    return atomic_write_jsonl(path, (asdict(chunk) for chunk in result.chunks))


def read_chunks(path: str | Path) -> list[Chunk]:
    path = Path(path)
    if not path.exists():
        raise DataError("chunks file not found; run `domainft extract` first", where=path)
    chunks = []
    for number, record in iter_jsonl(path, what="a chunk record"):
        try:
            chunks.append(Chunk(**record))
        except TypeError as exc:
            raise DataError(f"not a chunk record ({exc})", where=f"{path}:{number}") from None
    return chunks
