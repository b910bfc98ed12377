"""Scores that restating the question cannot earn: an "echo model" (answer = question) against the real items of
coal_safety_qa and iso_directives_qa, the reference answers, correct paraphrases, and the report's verdict."""

import json

import pytest

from domainft.evaluate.metrics import fact_recall, key_facts, novel_recall, rouge_l_char, score_qa
from domainft.evaluate.report import compare, verdict
from domainft.resources import folder


def _items(name: str) -> list[dict]:
    path = next(folder("eval_tasks").rglob(name))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


COAL = _items("coal_safety_qa.jsonl")
ISO = _items("iso_directives_qa.jsonl")


@pytest.mark.parametrize("item", COAL + ISO, ids=lambda i: i["id"])
def test_echo_scores_zero_and_the_reference_scores_one(item):
    rouge = "char" if item["id"].startswith("coal") else "word"
    echo = score_qa(item, item["question"], rouge=rouge)
    assert echo["fact_recall"] == 0.0 and echo["novel_recall"] == 0.0, echo
    ref = score_qa(item, item["answer"], rouge=rouge)
    assert ref["fact_recall"] == 1.0 and ref["novel_recall"] == 1.0, ref
    # A <think> block that restates the reference earns nothing: it is dropped before scoring.
    assert score_qa(item, f"<think>{item['answer']}</think>{item['question']}", rouge=rouge)["fact_recall"] == 0.0


# Correct answers in other words than the reference (hand-written, checked against the items' articles).
PARAPHRASES = {
    "coal-qa-001": "至少要培训72小时；考试合格以后，还得由有经验的老职工带着干满4个月，考核合格才能独立上岗。",
    "coal-qa-002": "氧气浓度不能低于20%，二氧化碳浓度不能超过0.5%（均按体积计）。",
    "coal-qa-003": "24小时以内，要如实报告给劳动行政主管部门以及管理矿山企业的主管部门。",
    "coal-qa-004": "一般在90日内结束，特殊情况可以延长，但最长不超过180日。",
    "coal-qa-009": "每3年重新确定一次；出了重大突水事故的，要在1年内重新确定。",
    "coal-qa-010": "水平钻距最少30m，止水套管至少10m长。",
    "coal-qa-012": "设计能力在0.9Mt/a到5.0Mt/a之间，第一水平深度不超过800m，延深水平不超过1200m。",
    "iso-qa-001": "A requirement is expressed with shall, and a prohibition with shall not.",
    "iso-qa-012": "Each entry defines one concept with one term; synonyms are listed as admitted terms.",
    "iso-qa-014": "No: 'may not' is not used for that; a prohibition is written with 'shall not'.",
}


@pytest.mark.parametrize("item_id", sorted(PARAPHRASES))
def test_a_correct_paraphrase_scores_well(item_id):
    item = next(i for i in COAL + ISO if i["id"] == item_id)
    answer = PARAPHRASES[item_id]
    assert fact_recall(answer, item["answer"], item["question"], item["keywords"]) >= 0.75, key_facts(item["answer"])
    assert novel_recall(answer, item["answer"], item["question"]) > 0.15


def test_facts_are_numbers_with_units_clauses_and_terms():
    assert key_facts("依照第十二条和6.3.2，氧气不得低于２０％，压力不低于18 MPa，须在4个月内、两个以上出口。") == [
        "第十二条", "6.3.2", "20%", "18mpa", "4个月", "两个"]
    assert key_facts("Use 'shall' for a requirement, see 5.2.1.") == ["5.2.1", "shall"]


def test_the_demo_reports_restated_answer_scores_zero():
    """The sample answer quoted in issue 26: ROUGE-L paid 0.52 for restating the question."""
    item = next(i for i in COAL if i["id"] == "coal-qa-002")
    tuned = "采掘工作面进风风流中的氧气和二氧化碳浓度有什么要求。"
    assert rouge_l_char(tuned, item["answer"]) > 0.5
    assert fact_recall(tuned, item["answer"], item["question"], item["keywords"]) == 0.0
    assert novel_recall(tuned, item["answer"], item["question"]) == 0.0


def _run(tmp_path, label: str, items: list[dict], answers: list[str]) -> dict:
    """An lm-eval-shaped run (results and a samples file) whose answers are `answers`."""
    rows = [{"doc_id": i, "doc": item, "filtered_resps": [answer], **score_qa(item, answer, rouge="char")}
            for i, (item, answer) in enumerate(zip(items, answers))]
    path = tmp_path / f"{label}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    metrics = [m for m in rows[0] if m not in ("doc_id", "doc", "filtered_resps")]
    means = {f"{m},none": sum(r[m] for r in rows) / len(rows) for m in metrics}
    return {"label": label, "samples": {"coal_safety_qa": path},
            "results": {"results": {"coal_safety_qa": means},
                        "higher_is_better": {"coal_safety_qa": {m: True for m in metrics}},
                        "n-samples": {"coal_safety_qa": {"original": len(rows), "effective": len(rows)}}}}


def test_an_echo_model_is_no_gain_in_the_verdict_though_rouge_rises(tmp_path):
    # The base model rambles about mine safety in general; the "tuned" one restates each question.
    ramble = "矿山安全生产非常重要，企业必须遵守国家有关规定，加强管理，保障职工安全。"
    base = _run(tmp_path, "base", COAL, [ramble] * len(COAL))
    echo = _run(tmp_path, "tuned", COAL, [i["question"] for i in COAL])
    tasks = compare(base, echo)
    info = tasks["coal_safety_qa"]
    assert info["primary"] == "fact_recall" and info["metrics"]["fact_recall"]["tuned"] == 0.0
    assert info["metrics"]["rouge_l_char"]["paired"]["low"] > 0  # ROUGE-L pays the echo beyond noise
    lines = verdict(tasks)
    assert not any(line.startswith("The tuned model beats") for line in lines), lines
    assert any("does not beat the base model on coal_safety_qa (fact_recall" in line for line in lines), lines
    assert any("restates the question" in line and "no gain" in line for line in lines), lines
    # The real answers do gain: the reference as the "tuned" model's answer beats the rambling base.
    gold = compare(base, _run(tmp_path, "gold", COAL, [i["answer"] for i in COAL]))
    assert any(line.startswith("The tuned model beats the base model on coal_safety_qa (fact_recall")
               for line in verdict(gold))
