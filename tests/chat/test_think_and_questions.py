"""Pure parts of chat: <think> handling (whole and streamed) and reading questions files."""

from __future__ import annotations

import json

import pytest

from domainft.chat import ThinkFilter, read_questions, split_think
from domainft.errors import DataError


@pytest.mark.parametrize("raw, thinking, answer", [
    ("<think>\nweigh it\n</think>\n\nAnswer.", "weigh it", "Answer."),
    ("weigh it</think>Answer.", "weigh it", "Answer."),  # the template opened the block in the prompt
    ("<think>still going", "still going", ""),
    ("Just an answer.", None, "Just an answer."),
])
def test_split_think(raw, thinking, answer):
    assert split_think(raw) == (thinking, answer)


def _stream(filt: ThinkFilter, pieces: list[str]) -> tuple[list[str], str]:
    shown = [filt.feed(p) for p in pieces]
    return [s for s in shown if s], filt.finish()


def test_hide_streams_only_after_the_block():
    shown, rest = _stream(ThinkFilter("hide", expect_thinking=False), ["<thi", "nk>a", "b</th", "ink>\n", "Ans", "wer"])
    assert "".join(shown) + rest == "Answer"


def test_hide_without_block_streams_at_once():
    shown, rest = _stream(ThinkFilter("hide", expect_thinking=False), ["Hel", "lo"])
    assert shown == ["Hel", "lo"] and rest == ""


def test_hide_when_block_is_expected_but_never_comes_releases_at_the_end():
    shown, rest = _stream(ThinkFilter("hide", expect_thinking=True), ["Hel", "lo"])
    assert shown == [] and rest == "Hello"


def test_show_passes_everything():
    shown, rest = _stream(ThinkFilter("show", expect_thinking=True), ["<think>x</think>", "y"])
    assert "".join(shown) == "<think>x</think>y" and rest == ""


def test_read_txt_and_jsonl(tmp_path):
    txt = tmp_path / "q.txt"
    txt.write_text("first?\n\n  second?  \n", encoding="utf-8")
    assert [q.text for q in read_questions(txt)] == ["first?", "second?"]

    jsonl = tmp_path / "q.jsonl"
    rows = [{"question": "a?", "answer": "A"}, {"instruction": "b?", "input": "ctx", "output": "B"}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n" + json.dumps({"x": 1}) + "\n")
    qs = read_questions(jsonl)
    assert [(q.text, q.reference) for q in qs[:2]] == [("a?", "A"), ("b?\nctx", "B")]
    # Bad lines keep their place, with the line number, so results.json gets one entry per line.
    assert qs[2].text is None and qs[2].error.startswith(f"{jsonl}:3")
    assert qs[3].text is None and "instruction" in qs[3].error


def test_missing_or_empty_questions_file(tmp_path):
    with pytest.raises(DataError):
        read_questions(tmp_path / "none.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError) as err:
        read_questions(empty)
    assert err.value.where == str(empty)


def test_read_a_json_array_of_strings_or_objects(tmp_path):
    """The source projects' files as they are: a JSON array of strings, or of objects with question or input."""
    strings = tmp_path / "questions.json"
    strings.write_text(json.dumps(["第一问？", "  第二问？ "], ensure_ascii=False), encoding="utf-8")
    assert [(q.text, q.where) for q in read_questions(strings)] == [("第一问？", f"{strings}[0]"), ("第二问？", f"{strings}[1]")]
    objects = tmp_path / "coalqa.json"
    objects.write_text(json.dumps([{"input": "瓦斯浓度上限？", "output": "1%"}, {"question": "q?"}, {"x": 1}, 3]),
                       encoding="utf-8")
    qs = read_questions(objects)
    assert [(q.text, q.reference) for q in qs[:2]] == [("瓦斯浓度上限？", "1%"), ("q?", None)]
    assert qs[2].error.startswith(f"{objects}[2]") and "input" in qs[2].error and qs[3].error
    # A .json file holding JSONL is still read line by line.
    lines = tmp_path / "lines.json"
    lines.write_text('{"question": "a?"}\n{"question": "b?"}\n')
    assert [q.text for q in read_questions(lines)] == ["a?", "b?"]
