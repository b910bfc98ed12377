"""Headings and sections: the document model every reader produces.

A reader turns a file into `Block`s (a line or paragraph of text, maybe a heading). `assemble` joins
them into one text and cuts it into `Section`s, each with the path of headings above it and its
character span in that text. Heading *ranks* decide nesting: a new heading closes every open heading
of the same or a deeper rank.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CN_NUM = "〇零一二三四五六七八九十百千两0-9０-９"
# Chinese legal structure: 编 > 章 > 节 > 条 (articles start a line and run straight into their text).
_CN_PART = re.compile(rf"^\s*第[{CN_NUM}]+([编章节])\s*(.*)$")
_CN_ARTICLE = re.compile(rf"^\s*(第[{CN_NUM}]+条)")
# Numbered clauses: "5", "5.2", "5.2.1" followed by a title or text; not "20%", "1172.16m3", "1." list items.
_CLAUSE = re.compile(r"^\s*([1-9]\d?(?:\.\d{1,3}){0,5})(?![\d.%．])\s*(?=[^\s\d.,，、%)）])(.*)$")
_ANNEX = re.compile(r"^\s*((?:Annex|Appendix|附录)\s*[A-Z])\b\s*(.*)$")
# Enumerated sub-headings used in Chinese technical documents: 一、 and （一）.
_CN_ENUM = re.compile(rf"^\s*([{CN_NUM[:-6]}]+)、\s*(.+)$")
_CN_PAREN = re.compile(rf"^\s*[（(]([{CN_NUM[:-6]}]+)[）)]\s*(.+)$")
_END_PUNCT = tuple("。；;！？!?：:，,.")

RANK = {"编": 1, "章": 2, "节": 3, "条": 4}
CLAUSE_RANK = 10  # + depth: "5" -> 11, "5.2" -> 12
STYLED_RANK = 10  # + level for unnumbered styled headings (h2, Heading 2)
ENUM_RANK, PAREN_RANK = 30, 31
TITLE_MAX = 60


@dataclass
class Block:
    text: str
    heading: tuple[int, str] | None = None  # (rank, title) when this block opens a section


@dataclass
class Section:
    path: tuple[str, ...]
    start: int
    end: int
    body_start: int  # where the text after the heading line begins


@dataclass
class Doc:
    text: str
    sections: list[Section] = field(default_factory=list)
    title: str = ""


def is_title_like(line: str) -> bool:
    line = line.strip()
    return 0 < len(line) <= TITLE_MAX and not line.endswith(_END_PUNCT)


def detect_heading(line: str, *, allow_enum: bool = True) -> tuple[int, str] | None:
    """(rank, title) when a plain-text line opens a section, else None."""
    stripped = line.strip()
    if not stripped:
        return None
    if m := _CN_PART.match(stripped):
        return (RANK[m.group(1)], stripped[:TITLE_MAX]) if len(stripped) <= TITLE_MAX else None
    if m := _CN_ARTICLE.match(stripped):
        return RANK["条"], m.group(1)
    if m := _ANNEX.match(stripped):
        return CLAUSE_RANK + 1, stripped if is_title_like(stripped) else m.group(1)
    if m := _CLAUSE.match(stripped):
        number = m.group(1)
        depth = number.count(".") + 1
        return CLAUSE_RANK + depth, stripped if is_title_like(stripped) else number
    if allow_enum and is_title_like(stripped) and len(stripped) <= 30:
        if _CN_ENUM.match(stripped):
            return ENUM_RANK, stripped
        if _CN_PAREN.match(stripped):
            return PAREN_RANK, stripped
    return None


def detect_headings(lines: list[str]) -> list[tuple[int, str] | None]:
    """`detect_heading` for each line of plain text, plus numbering continuity: "1 …", "2 …" are also
    list items inside clause 3.1.1. A top-level number N counts only when it follows the last one and
    the next sub-clause (N.1, N.0.1) below it starts with N (or none follows)."""
    found = [detect_heading(line) for line in lines]
    numbers = [_clause_number(line, hit) for line, hit in zip(lines, found)]
    next_sub: list[int | None] = [None] * len(lines)
    upcoming = None
    for i in range(len(lines) - 1, -1, -1):
        next_sub[i] = upcoming
        if numbers[i] and len(numbers[i]) > 1:
            upcoming = numbers[i][0]
    top = 0
    for i, number in enumerate(numbers):
        if not number:
            continue
        if len(number) > 1:
            top = number[0]
            continue
        step_ok = number[0] == top + 1 or (number[0] == top + 2 and is_title_like(lines[i]))
        if step_ok and next_sub[i] in (None, number[0]):
            top = number[0]
        else:
            found[i] = None
    return found


def _clause_number(line: str, hit: tuple[int, str] | None) -> list[int] | None:
    if hit is None or not (CLAUSE_RANK < hit[0] < ENUM_RANK) or _ANNEX.match(line.strip()):
        return None
    return [int(part) for part in _CLAUSE.match(line.strip()).group(1).split(".")]


def styled_heading(title: str, level: int) -> tuple[int, str]:
    """Rank for a heading marked up as such (HTML h1-h6, docx Heading N, Markdown #)."""
    title = " ".join(title.split())
    found = detect_heading(title, allow_enum=False)
    return (found[0] if found else STYLED_RANK + level), title[:120]


def assemble(blocks: list[Block], title: str = "") -> Doc:
    """Join blocks with newlines and cut the text into sections at headings."""
    parts: list[str] = []
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    pos = 0
    current: Section | None = None
    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        start = pos
        parts.append(text)
        pos += len(text) + 1  # the joining newline
        if block.heading is not None or current is None:
            if current is not None:
                current.end = start - 1
                sections.append(current)
            if block.heading is not None:
                rank, name = block.heading
                while stack and stack[-1][0] >= rank:
                    stack.pop()
                stack.append((rank, name))
                # An article ("第十条…") runs into its text: its body starts at the line, not after it.
                runs_on = rank == RANK["条"] or (rank > RANK["节"] and not is_title_like(text))
                body = start if runs_on else start + len(text) + 1
            else:
                body = start
            current = Section(tuple(name for _, name in stack), start, 0, body)
    doc_text = "\n".join(parts)
    if current is not None:
        current.end = len(doc_text)
        sections.append(current)
    for section in sections:
        section.body_start = min(section.body_start, section.end)
    return Doc(doc_text, sections, title)
