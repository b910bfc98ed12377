"""The task folders: items well-formed, coal answers checked against the regulations, lm-eval loads them."""

import json
import os
import re
import unicodedata
from pathlib import Path

import pytest

from domainft.evaluate.tasks import known_tasks
from domainft.resources import folder

TASKS = folder("eval_tasks")
CORPUS = Path(os.environ.get("DOMAINFT_COAL_CORPUS", "/work/shared/corpora/coal"))
# Article headers: 第十条 in laws, 9.4.1 / 5.6.1 in technical standards.
HEADER = re.compile(r"第[一二三四五六七八九十百零]+条|\d+(?:\.\d+){1,5}(?=[^\d.%a-zA-Z])")


def _items(name: str) -> list[dict]:
    path = next(TASKS.rglob(name))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _flat(text: str) -> str:
    # Corpus lines end in a literal backslash-n; full-width digits appear in some laws.
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text.replace("\\n", "\n")))


def test_every_task_and_group_is_named():
    assert {"coal_safety", "coal_safety_mc", "coal_safety_qa", "iso_directives", "iso_directives_qa",
            "iso_verbal_forms"} <= set(known_tasks())


@pytest.mark.parametrize("name", ["coal_safety_mc.jsonl", "iso_verbal_forms.jsonl"])
def test_multiple_choice_items_are_well_formed(name):
    items = _items(name)
    assert len(items) >= 20
    assert len({i["id"] for i in items}) == len(items)
    for item in items:
        assert 0 <= item["answer"] < len(item["choices"]), item["id"]
        assert len(set(item["choices"])) == len(item["choices"]), item["id"]


def test_coal_items_cite_source_and_article():
    for item in _items("coal_safety_mc.jsonl") + _items("coal_safety_qa.jsonl"):
        assert item["source"].endswith(".txt") and item["article"] and item["evidence"], item["id"]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="coal corpus not on this machine (set DOMAINFT_COAL_CORPUS)")
@pytest.mark.parametrize("name", ["coal_safety_mc.jsonl", "coal_safety_qa.jsonl"])
def test_coal_answers_are_in_the_cited_article(name):
    for item in _items(name):
        raw = (CORPUS / item["source"]).read_text(encoding="utf-8").replace("\\n", "\n")
        lines = [_flat(line) for line in raw.splitlines()]
        evidence = _flat(item["evidence"])
        at = next((i for i, line in enumerate(lines) if evidence in line), None)
        assert at is not None, f"{item['id']}: evidence not in {item['source']}"
        # The nearest line at or above the evidence that opens an article is the article cited.
        header = next(m.group() for line in reversed(lines[: at + 1]) if (m := HEADER.match(line)))
        assert header == _flat(item["article"]), (item["id"], header)
        if "choices" in item:
            assert _flat(item["choices"][item["answer"]]) in evidence, item["id"]
        else:
            assert all(_flat(k) in _flat(item["answer"]) for k in item["keywords"]), item["id"]


def test_qa_items_have_keywords_from_their_answers():
    for item in _items("iso_directives_qa.jsonl"):
        assert item["keywords"], item["id"]
        assert all(k.lower() in item["answer"].lower() for k in item["keywords"]), item["id"]


def test_lm_eval_resolves_custom_dataset_from_any_cwd(tmp_path, monkeypatch):
    """lm-eval's own YAML loader: `!function utils.load_*` resolves beside the YAML, data beside utils.py."""
    from lm_eval.tasks._yaml_loader import load_yaml

    monkeypatch.chdir(tmp_path)
    for yaml_name, n in [("coal_safety_mc.yaml", 34), ("iso_directives_qa.yaml", 14), ("iso_verbal_forms.yaml", 22)]:
        cfg = load_yaml(next(TASKS.rglob(yaml_name)), resolve_func=True)
        dataset = cfg["custom_dataset"](**cfg["dataset_kwargs"], version=1.0, pretrained="ignored")
        assert len(dataset["test"]) == n


def test_iso_items_are_grounded_in_the_sample_rulebook():
    import html

    page = (folder("data") / "iso" / "drafting-rules.html").read_text(encoding="utf-8")
    text = html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))
    for item in _items("iso_directives_qa.jsonl"):
        assert item["evidence"] in text, item["id"]


def test_hand_written_qa_items_are_not_near_duplicates_of_the_demo_training_pairs():
    from rapidfuzz import fuzz

    train_path = folder("data") / "coal" / "demo_qa.jsonl"
    train = [json.loads(line) for line in train_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for item in _items("coal_safety_qa.jsonl"):
        worst = max(fuzz.ratio(item["question"] + item["answer"], t["instruction"] + t["output"]) for t in train)
        assert worst < 70, item["id"]
