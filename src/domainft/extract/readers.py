"""One reader per format: file -> `Doc` (text + sections), or `Unreadable` with a one-line reason."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from .structure import (
    Block,
    Doc,
    assemble,
    detect_heading,
    detect_headings,
    is_title_like,
    styled_heading,
)


class Unreadable(Exception):
    """This file is skipped; the message is the one-line reason shown to the user."""


SNIFF_BYTES = 8192


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding). UTF-8 first, then what charset-normalizer finds (GBK, GB18030, UTF-16, ...)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    if b"\x00" in data[:SNIFF_BYTES]:
        raise Unreadable("binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Chinese documents that are not UTF-8 are nearly always GB18030/GBK: prefer it when it decodes cleanly,
    # because charset-normalizer can mistake short GBK texts for other CJK code pages.
    try:
        text = data.decode("gb18030")
        if _cjk_share(text) > 0.3:
            return text, "gb18030"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise Unreadable("unknown text encoding (not UTF-8, GBK or any encoding charset-normalizer knows)")
    return str(best), best.encoding


def _cjk_share(text: str) -> float:
    letters = [c for c in text if not c.isspace() and not c.isdigit()]
    if not letters:
        return 0.0
    return sum("\u4e00" <= c <= "\u9fff" for c in letters) / len(letters)


def normalize_newlines(text: str) -> str:
    """CRLF -> LF, and the literal two-character `\\n` some corpora carry -> a real line break."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\\n\n", "\n").replace("\\n", "\n")
    return text


def _lines_to_doc(text: str, *, first_line_title: bool = True) -> Doc:
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    title = ""
    if first_line_title and lines and is_title_like(lines[0]) and detect_heading(lines[0]) is None:
        title = lines.pop(0)  # a plain first line is the document's title, not a section
    blocks = [Block(line, heading) for line, heading in zip(lines, detect_headings(lines))]
    return assemble(blocks, title)


def read_txt(path: Path) -> tuple[Doc, str]:
    text, encoding = decode_text(path.read_bytes())
    return _lines_to_doc(normalize_newlines(text)), encoding


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def read_md(path: Path) -> tuple[Doc, str]:
    text, encoding = decode_text(path.read_bytes())
    blocks: list[Block] = []
    title = ""
    in_fence = False
    for line in normalize_newlines(text).split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _MD_HEADING.match(line)
        if m:
            level, name = len(m.group(1)), m.group(2)
            if level == 1 and not title and not blocks:
                title = name
                continue
            blocks.append(Block(name, styled_heading(name, level)))
        else:
            blocks.append(Block(line))
    return assemble(blocks, title), encoding


# ------------------------------------------------------------------ HTML

_DROP_TAGS = {"script", "style", "noscript", "nav", "template", "iframe", "svg", "form", "button", "head", "menu"}
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div", "dl", "dt",
    "figcaption", "figure", "footer", "header", "hr", "html", "li", "main", "ol", "p", "pre", "section",
    "summary", "ul", "br", "tr", "td", "th", "tbody", "thead", "tfoot",
}
_HEADINGS = {f"h{i}": i for i in range(1, 7)}


def read_html(path: Path) -> tuple[Doc, str]:
    from bs4 import BeautifulSoup, Comment, NavigableString, Tag
    from bs4.element import Declaration, Doctype, ProcessingInstruction

    raw, encoding = decode_text(path.read_bytes())
    soup = BeautifulSoup(raw, "lxml")
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text(" ").split()) if title_tag else ""
    blocks: list[Block] = []
    buffer: list[str] = []
    skip = (Comment, Doctype, Declaration, ProcessingInstruction)

    def flush() -> None:
        text = " ".join("".join(buffer).split())
        buffer.clear()
        if text:
            blocks.append(Block(text))

    def dropped(tag: Tag) -> bool:
        if tag.name in _DROP_TAGS or tag.get("role") in ("navigation", "banner", "contentinfo"):
            return True
        if tag.get("hidden") is not None or tag.get("aria-hidden") == "true":
            return True
        # Site chrome: a page header/footer outside the document body (<main>/<article>).
        return tag.name in ("header", "footer") and tag.find_parent(["main", "article"]) is None

    def walk(node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, skip):
                    buffer.append(str(child))
            elif isinstance(child, Tag):
                if dropped(child):
                    continue
                if child.name in _HEADINGS:
                    flush()
                    name = " ".join(child.get_text(" ").split())
                    if name:
                        blocks.append(Block(name, styled_heading(name, _HEADINGS[child.name])))
                elif child.name == "table":
                    flush()
                    _table_blocks(child, blocks)
                elif child.name in _BLOCK_TAGS:
                    flush()
                    walk(child)
                    flush()
                else:
                    walk(child)

    walk(soup.body or soup)
    flush()
    return assemble(blocks, title), encoding


def _table_blocks(table, blocks: list[Block]) -> None:
    """A table becomes its caption plus one `cell | cell` line per row: readable, and kept as text."""
    caption = table.find("caption")
    if caption is not None:
        blocks.append(Block(" ".join(caption.get_text(" ").split())))
    for row in table.find_all("tr"):
        cells = [" ".join(c.get_text(" ").split()) for c in row.find_all(["th", "td"], recursive=False)]
        if any(cells):
            blocks.append(Block(" | ".join(cells)))


# ------------------------------------------------------------------ DOCX

_HEADING_STYLE = re.compile(r"^(?:Heading|标题)\s*(\d)$", re.IGNORECASE)


def read_docx(path: Path) -> tuple[Doc, str]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    if not zipfile.is_zipfile(path):
        raise Unreadable("not a valid .docx (not a zip container); an old .doc renamed to .docx?")
    try:
        document = docx.Document(str(path))
    except Exception as exc:  # python-docx raises several types for a damaged package
        raise Unreadable(f"not a valid .docx ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})") from None
    title = (document.core_properties.title or "").strip()
    blocks: list[Block] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells = _unique_cells(row.cells)
                if any(cells):
                    blocks.append(Block(" | ".join(cells)))
            continue
        assert isinstance(item, Paragraph)
        text = item.text.strip()
        if not text:
            continue
        style = item.style.name if item.style is not None else ""
        if style == "Title":
            if not title and not blocks:
                title = text
                continue
            blocks.append(Block(text, styled_heading(text, 1)))
        elif m := _HEADING_STYLE.match(style):
            blocks.append(Block(text, styled_heading(text, int(m.group(1)))))
        else:
            blocks.append(Block(text, ()))  # () = plain paragraph: numbering decided below
    plain = [i for i, b in enumerate(blocks) if b.heading == ()]
    for i, heading in zip(plain, detect_headings([blocks[i].text for i in plain])):
        blocks[i].heading = heading
    return assemble(blocks, title), "docx"


def _unique_cells(cells) -> list[str]:
    """Merged cells repeat in python-docx's row.cells: keep each once."""
    seen: list[int] = []
    out: list[str] = []
    for cell in cells:
        if id(cell._tc) in seen:
            continue
        seen.append(id(cell._tc))
        out.append(" ".join(cell.text.split()))
    return out


# ------------------------------------------------------------------ PDF


def read_pdf(path: Path) -> tuple[Doc, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception:
                raise Unreadable("encrypted PDF") from None
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise Unreadable(f"not a readable PDF ({str(exc).splitlines()[0][:80]})") from None
    text = normalize_newlines("\n".join(pages))
    if not text.strip():
        raise Unreadable("PDF has no extractable text (scanned images?)")
    return _lines_to_doc(text), "pdf"


def read_doc(path: Path) -> tuple[Doc, str]:
    raise Unreadable("old binary Word .doc is not supported; save it as .docx")


READERS: dict[str, Callable[[Path], tuple[Doc, str]]] = {
    ".txt": read_txt,
    ".text": read_txt,
    ".md": read_md,
    ".markdown": read_md,
    ".html": read_html,
    ".htm": read_html,
    ".xhtml": read_html,
    ".docx": read_docx,
    ".pdf": read_pdf,
    ".doc": read_doc,
}
