"""Extraction against the real coal corpus, the ISO fixture, and files built in each real format."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from domainft.extract import extract_inputs, extract_table, read_chunks, write_chunks
from domainft.extract.chunks import split_span

CORPUS = Path("/work/shared/corpora/coal")
REPO = Path(__file__).resolve().parents[2]
LAW = "19-中华人民共和国矿山安全法.txt"


def _check_invariants(result, chunk_chars):
    ids = [c.id for c in result.chunks]
    assert len(ids) == len(set(ids))
    for chunk in result.chunks:
        assert chunk.text and chunk.text == chunk.text.strip()
        assert chunk.end - chunk.start == len(chunk.text)
        assert len(chunk.text) <= chunk_chars


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared coal corpus not on this machine")
def test_whole_coal_corpus_in_one_call():
    result = extract_inputs([CORPUS], chunk_chars=800, overlap_chars=100)
    by_format = {}
    for stat in result.files:
        by_format[stat.format] = by_format.get(stat.format, 0) + 1
        assert stat.chunks > 0, stat.file
    assert by_format == {"txt": 38, "docx": 2}
    assert {s.file for s in result.skipped} == {"README.md", "LICENSE-CoalQA"}
    _check_invariants(result, 800)
    # Literal "\n" sequences became line breaks.
    assert not any("\\n" in c.text for c in result.chunks)
    # Articles are split on 第X条 with the chapter above them, and provenance points back into the text.
    law = [c for c in result.chunks if c.file == LAW]
    first = law[0]
    assert first.title == "中华人民共和国矿山安全法(2009修正)"
    assert first.heading_path[0] == "第一章总则" and first.text.startswith("第一条为了保障矿山生产安全")
    assert any(c.heading_path[0] == "第二章矿山建设的安全保障" for c in law)
    # The odd double extension is read as text.
    assert any(s.file.endswith(".txt-zxq.txt") and s.chunks for s in result.files)
    # The table lists every file with its chunk count.
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(extract_table(result))
    text = console.export_text()
    assert LAW in text and "skipped" in text and "煤矿安全技术措施汇编.docx" in text


def test_bad_files_get_one_line_reasons(tmp_path):
    law = (REPO / "data/coal/docs" / LAW).read_text(encoding="utf-8")
    (tmp_path / "gbk.txt").write_bytes(law.encode("gbk"))
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text("  \n\n")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512)
    (tmp_path / "fake.docx").write_bytes(b"not a zip at all")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result = extract_inputs([tmp_path], chunk_chars=600, overlap_chars=50)
    reasons = {s.file: s.reason for s in result.skipped}
    assert set(reasons) == {"empty.txt", "blank.md", "binary.txt", "old.doc", "fake.docx", "image.png"}
    assert all("\n" not in r and len(r) < 160 for r in reasons.values())
    assert "empty" in reasons["empty.txt"] and "binary" in reasons["binary.txt"]
    assert ".doc" in reasons["old.doc"] and "docx" in reasons["old.doc"]
    assert "unsupported" in reasons["image.png"]
    [stat] = result.files
    assert stat.file == "gbk.txt" and stat.encoding == "gb18030"
    assert any(c.text.startswith("第一条为了保障矿山生产安全") for c in result.chunks)


def test_iso_html_fixture():
    result = extract_inputs([REPO / "data/iso/drafting-rules.html"], chunk_chars=800, overlap_chars=100)
    _check_invariants(result, 800)
    text = "\n".join(c.text for c in result.chunks)
    for dropped in ("Sign in", "analytics", "font-family", "Table of contents", "Contact"):
        assert dropped not in text
    assert "requirement | shall / shall not | is to, is required to / is not allowed, must not" in text
    assert "Note 1 to entry: A requirement is expressed" in text
    assert "EXAMPLE The valve can withstand" in text
    paths = [c.heading_path for c in result.chunks]
    assert ["5 Structure of a document", "5.3 Lists", "5.3.1 Punctuation of lists"] in paths
    verbal = [c for c in result.chunks if c.heading_path[0] == "7 Verbal forms for expressing provisions"]
    assert any("Table 1" in c.text for c in verbal)


def test_docx_headings_and_tables(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Mine ventilation rules", 0)
    document.add_heading("1 General", 1)
    document.add_paragraph("Fresh air shall reach every working face. Fans shall run without interruption.")
    document.add_heading("2 Limits", 1)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "gas", "limit"
    table.cell(1, 0).text, table.cell(1, 1).text = "methane", "1.0 %"
    document.save(tmp_path / "rules.docx")
    result = extract_inputs([tmp_path / "rules.docx"], chunk_chars=100, overlap_chars=0)  # too small to pack both
    by_path = {tuple(c.heading_path): c.text for c in result.chunks}
    assert by_path[("1 General",)].startswith("1 General\nFresh air shall")
    assert "methane | 1.0 %" in by_path[("2 Limits",)]
    assert result.chunks[0].title == "Mine ventilation rules"


def test_markdown_and_pdf(tmp_path):
    (tmp_path / "guide.md").write_text("# Guide\n\n## 1 Scope\n\nThis guide covers ladders.\n\n## 2 Use\n\nUse it.\n")
    (tmp_path / "rules.pdf").write_bytes(_tiny_pdf(["1 Scope", "Ladders shall carry 150 kg.", "2 Care", "Store dry."]))
    result = extract_inputs([tmp_path], chunk_chars=200, overlap_chars=0)
    assert not result.skipped
    # Small sibling sections are packed into one chunk whose path names the first and last.
    [md] = [c for c in result.chunks if c.file == "guide.md"]
    assert md.heading_path == ["1 Scope – 2 Use"] and md.title == "Guide"
    assert md.text == "1 Scope\nThis guide covers ladders.\n2 Use\nUse it."
    [pdf] = [c for c in result.chunks if c.file == "rules.pdf"]
    assert pdf.heading_path == ["1 Scope – 2 Care"]
    assert pdf.text == "1 Scope\nLadders shall carry 150 kg.\n2 Care\nStore dry."


def test_long_sections_split_at_sentence_ends_with_overlap():
    sentence = "井下作业人员必须佩戴自救器。"  # 14 chars
    text = "".join(f"第{i}句{sentence}" for i in range(60))
    spans = split_span(text, 0, len(text), 100, 30)
    assert len(spans) > 5
    for lo, hi in spans:
        assert hi - lo <= 100 and text[lo:hi].endswith("。")
    for (a_lo, a_hi), (b_lo, _) in zip(spans, spans[1:]):
        assert a_lo < b_lo < a_hi  # consecutive pieces share whole sentences
        assert text[b_lo - 1] == "。"
    latin = "Fans shall run. " * 40
    assert all(latin[lo:hi].endswith(".") for lo, hi in split_span(latin, 0, len(latin), 90, 20))


def test_chunks_roundtrip(tmp_path):
    result = extract_inputs([REPO / "data/coal/docs"], chunk_chars=800, overlap_chars=100)
    path = write_chunks(result, tmp_path / "chunks.jsonl")
    assert read_chunks(path) == result.chunks
    assert not list(tmp_path.glob(".*.tmp"))


def _tiny_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with Helvetica text lines (offsets computed, so pypdf reads it without repair)."""
    escaped = [re.sub(r"([()\\])", r"\\\1", line) for line in lines]
    stream = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in escaped) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out
