"""run_files: the one reader and writer per run-folder format."""

from __future__ import annotations

import json

import pytest

from domainft.errors import DataError
from domainft.run_files import AppendJournal, read_export_record, read_jsonl, write_export_record


def test_a_journal_skips_a_torn_last_line_and_the_next_append_cuts_it(tmp_path):
    path = tmp_path / "j.jsonl"
    with AppendJournal(path) as journal:
        journal.append({"a": 1})
        journal.append({"a": "二"})
    with open(path, "ab") as fh:
        fh.write(b'{"a": 3')  # killed mid-line
    journal = AppendJournal(path)
    assert journal.records() == [{"a": 1}, {"a": "二"}]
    journal.repair()
    journal.append({"a": 4})
    journal.close()
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"a": "二"}\n{"a": 4}\n'


def test_a_journal_creates_its_folder_and_reads_nothing_when_missing(tmp_path):
    journal = AppendJournal(tmp_path / "new" / "j.jsonl")
    assert journal.records() == [] and journal.committed() == []
    journal.repair()
    journal.open().close()
    assert journal.path.read_bytes() == b""


def test_read_jsonl_names_the_file_and_line_of_a_bad_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n[2]\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    assert err.value.where == f"{path}:4"
    assert read_jsonl(path, skip_bad=True) == [{"a": 1}]
    assert read_jsonl(tmp_path / "missing.jsonl", missing_ok=True) == []


def test_the_export_record_round_trips_and_is_none_before_an_export(tmp_path):
    assert read_export_record(tmp_path) is None
    write_export_record(tmp_path, {"files": [], "modelfile_from": "x.gguf"})
    assert read_export_record(tmp_path) == {"files": [], "modelfile_from": "x.gguf"}
    assert json.loads((tmp_path / "export.json").read_text()) == {"files": [], "modelfile_from": "x.gguf"}
    (tmp_path / "export.json").write_text("{", encoding="utf-8")
    with pytest.raises(DataError):
        read_export_record(tmp_path)
