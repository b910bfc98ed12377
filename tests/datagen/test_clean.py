"""Dedup, split by document, contamination refusal, and reply parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from domainft.datagen import check_contamination, clean_and_split, dedup, load_prompts, split_by_document
from domainft.datagen.prompts import check_pairs
from domainft.llm.replies import BadReply, parse_json_reply
from domainft.errors import DataError, RecipeError
from domainft.recipe import recipe_from_dict
from domainft.extract import Chunk


def rec(question: str, answer: str, file: str = "a.txt", heading: str = "第一章") -> dict:
    return {"instruction": question, "input": "", "output": answer, "source": {"file": file, "heading_path": [heading]}}


def test_dedup_exact_and_near_chinese():
    records = [
        rec("煤矿企业必须建立什么制度？", "煤矿企业必须建立健全安全生产责任制度和安全管理制度。"),
        rec("煤矿企业必须建立什么制度？", "煤矿企业必须建立健全安全生产责任制度和安全管理制度。"),  # exact
        rec("煤矿企业必须建立什么制度?", "煤矿企业必须建立健全安全生产责任制和安全管理制度。"),  # one char, one mark off
        rec("井下作业人员必须佩戴什么？", "井下作业人员必须佩戴自救器和矿灯。"),
    ]
    kept, counts = dedup(records, 0.9)
    assert [r["instruction"] for r in kept] == ["煤矿企业必须建立什么制度？", "井下作业人员必须佩戴什么？"]
    assert counts == {"exact": 1, "near": 1}


def test_split_by_document_keeps_documents_whole_and_is_seeded():
    records = [rec(f"问题{d}-{i}", f"答案{d}-{i}", file=f"doc{d}.txt") for d in range(10) for i in range(5)]
    splits, unit = split_by_document(records, val=0.1, test=0.2, seed=7)
    assert unit == "document"
    files = {s: {r["source"]["file"] for r in rows} for s, rows in splits.items()}
    assert not (files["train"] & files["val"]) and not (files["train"] & files["test"]) and not (files["val"] & files["test"])
    assert (len(files["train"]), len(files["val"]), len(files["test"])) == (7, 1, 2)
    assert split_by_document(records, 0.1, 0.2, seed=7) == (splits, unit)
    assert split_by_document(records, 0.1, 0.2, seed=8)[0] != splits


def test_split_falls_back_to_sections_with_one_document():
    records = [rec(f"q{h}{i}", f"a{h}{i}", heading=f"{h} Clause") for h in range(1, 8) for i in range(3)]
    splits, unit = split_by_document(records, val=0.15, test=0.15, seed=1)
    assert unit == "section" and all(splits.values())
    heads = {s: {r["source"]["heading_path"][0] for r in rows} for s, rows in splits.items()}
    assert not (heads["train"] & (heads["val"] | heads["test"]))


def test_contaminated_eval_split_is_refused_and_not_written(tmp_path: Path):
    train = [rec("What does clause 7.2 require?", "Requirements use shall and shall not.", file="a.html")]
    test = [rec("What does clause 7.2 require ?", "Requirements use shall and shall not!", file="b.html")]
    with pytest.raises(DataError) as info:
        check_contamination(train, {"test": test}, 0.9, tmp_path)
    line = info.value.one_line()
    assert "test pair 1 'What does clause 7.2 require ?' from b.html" in line
    assert "train pair 1 'What does clause 7.2 require?' from a.html" in line


def test_clean_and_split_writes_alpaca_files(tmp_path: Path):
    records = [rec(f"问题{d}-{i}是什么？", f"答案{d}-{i}的内容在第{i}条。", file=f"doc{d}.txt") for d in range(5) for i in range(4)]
    report = clean_and_split(records, tmp_path, threshold=0.95, val=0.2, test=0.2, seed=42)
    assert report.counts == {"train": 12, "val": 4, "test": 4} and report.documents == {"train": 3, "val": 1, "test": 1}
    assert (tmp_path / "train.jsonl").read_text(encoding="utf-8").count("\n") == 12


def test_reply_repairs_and_rejections():
    spec = load_prompts("coal")
    chunk = Chunk.make("x.txt", ["第一章"], 0, "第一条煤矿企业必须建立健全安全生产责任制度。", "规定")
    fenced = '```json\n{"pairs": [{"question": "煤矿企业必须建立什么？", "answer": "安全生产责任制度",},],}\n```'
    pairs, rejected = check_pairs(parse_json_reply(fenced), spec, chunk, 10)
    assert pairs == [{"question": "煤矿企业必须建立什么？", "answer": "安全生产责任制度"}] and not rejected
    reply = {"pairs": [
        {"question": "问" * 121, "answer": "安全生产责任制度"},
        {"question": "煤矿企业必须做什么？", "answer": "每天喝咖啡并且唱歌跳舞"},
        {"question": "煤矿企业必须做什么？"},
        {"question": "煤矿企业必须建立什么？", "answer": "安全生产责任制度"},
        {"question": "煤矿企业必须建立什么？", "answer": "安全生产责任制度"},
    ]}
    pairs, rejected = check_pairs(reply, spec, chunk, 10)
    assert len(pairs) == 1
    assert rejected == {"question_too_long": 1, "ungrounded": 1, "schema": 1, "duplicate_in_reply": 1}
    for bad in ("Sure! Here are pairs:", '{"pairs": [{"question": "a", '):
        with pytest.raises(BadReply, match="invalid_json"):
            parse_json_reply(bad)
    with pytest.raises(BadReply, match="schema"):
        check_pairs({"qa": []}, spec, chunk, 10)


def test_prompt_files_load_and_unknown_name_is_a_recipe_error():
    assert load_prompts("coal").question_max_chars == 120 and load_prompts("coal").language == "zh"
    iso = load_prompts("iso")
    assert iso.language == "en" and "shall" in iso.system
    with pytest.raises(RecipeError) as info:
        load_prompts("cole")
    assert info.value.one_line().startswith("datagen.prompts: prompt file 'cole' not found")
    assert "did you mean 'coal'?" in info.value.one_line()


def test_pairs_per_document_spread_over_chunks_by_length():
    from domainft.datagen.runner import pairs_for_chunks
    from domainft.extract import Chunk

    def chunk(cid, file, n):
        return Chunk(id=cid, file=file, title="t", heading_path=[], text="字" * n, start=0, end=n)

    chunks = [chunk("a1", "a.txt", 300), chunk("a2", "a.txt", 100), chunk("b1", "b.txt", 50)]
    counts = pairs_for_chunks(chunks, per_document=12, per_chunk=5)
    assert counts == {"a1": 9, "a2": 3, "b1": 12}  # each document gets 12, in proportion to length
    # exactly that many per document: a chunk whose share rounds to none is not asked
    assert pairs_for_chunks(chunks, per_document=1, per_chunk=5) == {"a1": 1, "a2": 0, "b1": 1}
    assert pairs_for_chunks(chunks, per_document=None, per_chunk=5) == {"a1": 5, "a2": 5, "b1": 5}


def test_a_pairs_per_document_range_asks_each_chunk_its_share_of_min_and_max():
    """CoalQA asks its teacher for 10-20 pairs per document: `pairs_per_document: [10, 20]` spreads both ends over
    the document's chunks; the instruction says the range, the request schema and the check keep at most the max."""
    from domainft.datagen.prompts import load_prompts
    from domainft.datagen.runner import asks_for_chunks
    from domainft.extract import Chunk

    def chunk(cid, file, n):
        return Chunk(id=cid, file=file, title="t", heading_path=[], text="字" * n, start=0, end=n)

    chunks = [chunk("a1", "a.txt", 300), chunk("a2", "a.txt", 100), chunk("b1", "b.txt", 50), chunk("c1", "c.txt", 9),
              *[chunk(f"d{i}", "d.txt", 10) for i in range(30)]]
    recipe = recipe_from_dict({"name": "t", "extract": {"inputs": ["x"]},
                               "datagen": {"prompts": "coalqa", "pairs_per_document": [10, 20]}})
    spec = load_prompts("coalqa")
    asks = asks_for_chunks(chunks, recipe.datagen, spec)
    assert asks["a1"] == (8, 15) and asks["a2"] == (2, 5) and asks["b1"] == asks["c1"] == (10, 20)
    d = [asks[c.id] for c in chunks if c.file == "d.txt" and c.id in asks]  # 30 equal chunks: 20 asked, one each
    assert len(d) == 20 and set(d) == {(1, 1)}
    text = spec.render(chunks[0], 15, 8)
    assert "8" in text and "15" in text and spec.request_schema(15)["maxItems"] == 15


def test_prefer_words_put_their_chunks_first():
    """The ISO seed prefers sections that say shall or should: those chunks are asked first (max_chunks keeps them)."""
    from domainft.datagen.prompts import load_prompts
    from domainft.datagen.runner import preferred_first
    from domainft.extract import Chunk

    spec = load_prompts("iso")
    texts = ["Notes give information.", "A document shall state its scope.", "Marshall plans.", "SHOULD is advice."]
    chunks = [Chunk.make("f.html", [str(i)], i, t) for i, t in enumerate(texts)]
    assert [c.text for c in preferred_first(chunks, spec)] == [texts[1], texts[3], texts[0], texts[2]]


def test_coalqa_keeps_answers_up_to_its_1024_characters():
    """The length check is the prompt file's (answer_max_chars): CoalQA asks for answers under 1024 characters, so
    one of 1024 is kept and a longer one set aside as answer_too_long; the coal prompt's 600 would reject it."""
    text = "井下作业职工接受安全教育培训的时间不得少于七十二小时，考试合格后方可下井作业。" * 40
    chunk = Chunk.make("f.txt", ["第一章"], 0, text, title="煤矿安全规程")
    answer = text[:1024]
    reply = [{"input": "新职工下井前要接受多长时间的安全教育培训？", "output": answer},
             {"input": "新职工下井前的安全培训考试不合格能否下井作业？", "output": text[:1025]}]
    pairs, rejected = check_pairs(reply, load_prompts("coalqa"), chunk, max_pairs=20)
    assert [p["answer"] for p in pairs] == [answer] and rejected == {"answer_too_long": 1}
    coal = load_prompts("coal")
    _, rejected = check_pairs({"pairs": [{"question": r["input"], "answer": r["output"]} for r in reply]}, coal, chunk, 20)
    assert rejected == {"answer_too_long": 2} and coal.answer_max_chars == 600


def test_knowledge_probe_keeps_questions_on_trained_passages_and_refuses_near_duplicates():
    from domainft.datagen.clean import knowledge_probe

    def rec(chunk, index, question, answer="答案。"):
        return {"instruction": question, "input": "", "output": answer,
                "source": {"file": "a.txt", "heading_path": ["第一章"], "chunk_id": chunk, "index": index}}

    train = [rec("c1", 0, "《矿山安全法》第十条规定了什么？"), rec("c2", 0, "《矿山安全法》第十一条规定了什么？")]
    probes = [
        rec("c1", 1, "按照《矿山安全法》，第十条有哪些要求？"),  # kept: another wording, a trained passage
        rec("c2", 1, "《矿山安全法》第十一条规定了什么？"),  # the training question itself
        rec("c2", 2, "《矿山安全法》第十一条规定了什么"),  # a near duplicate of it
        rec("c9", 1, "按照《矿山安全法》，第九十条有哪些要求？"),  # its passage went to val or test
        rec("c1", 2, "按照《矿山安全法》，第十条有哪些要求？"),  # a second probe asking the same
        rec("c1", 3, "哪部法律规定了矿山企业的安全出口？"),  # repeats a dataset file's question
    ]
    kept, dropped = knowledge_probe(probes, train, 0.9, ["哪部法律规定了矿山企业的安全出口？"])
    assert [p["source"]["index"] for p in kept] == [1] and kept[0]["source"]["chunk_id"] == "c1"
    assert dropped == {"c2#1": "near_train_question", "c2#2": "near_train_question", "c9#1": "passage_not_trained",
                       "c1#2": "duplicate", "c1#3": "near_train_question"}
