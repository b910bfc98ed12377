"""The retrieval baseline: BM25 over the run's own chunks, the `<task>_rag` variants plain lm-eval loads, and the
report's "tune, retrieve, or both" from paired intervals."""

import json

import pytest
from helpers import RECIPES

from domainft.datagen import run_datagen
from domainft.evaluate.report import arms_verdict, compare, retrieval_arms
from domainft.evaluate.tasks import RAG_SUFFIX, retrieval_tasks, run_made_tasks
from domainft.extract import extract_for_plan
from domainft.plan import make_plan
from domainft.recipe import load_recipe
from domainft.retrieval import run_retriever, tokenize


@pytest.fixture(scope="module")
def demo_plan(tmp_path_factory):
    """The demo recipe's own chunks, pairs and knowledge probe (offline), with eval.retrieval on."""
    recipe = load_recipe(RECIPES / "demo-coal-smollm2.yaml", ["eval.retrieval=bm25", "eval.retrieval_top_k=2"])
    plan = make_plan(recipe, run_dir=tmp_path_factory.mktemp("rag") / "run")
    extract_for_plan(plan)
    run_datagen(plan, progress=False)
    return plan


def test_chinese_is_searched_by_words():
    assert {"二氧化碳", "浓度", "20"} <= set(tokenize("二氧化碳浓度不得超过２０％"))
    assert tokenize("Which verbal FORM expresses a requirement?")[:3] == ["which", "verbal", "form"]


def test_bm25_finds_the_passage_each_knowledge_question_asks_about(demo_plan):
    retriever = run_retriever(demo_plan.extract_dir / "chunks.jsonl")
    probes = [json.loads(line) for line in demo_plan.knowledge_file.read_text(encoding="utf-8").splitlines()]
    found = [p["source"]["chunk_id"] in {h.chunk.id for h in retriever.search(p["question"], 3)} for p in probes]
    assert len(found) >= 10 and sum(found) / len(found) >= 0.8, found


def test_retrieval_variants_load_in_lm_eval_and_score_the_question_not_the_prompt(demo_plan, monkeypatch, tmp_path):
    from lm_eval.tasks._yaml_loader import load_yaml

    made = run_made_tasks(demo_plan, ["coal_safety"])
    variants = retrieval_tasks(demo_plan, ["coal_safety", *map(str, made.values())])
    # Every free-answer task gets its arm; multiple choice does not.
    assert sorted(v.stem for v in variants) == ["coal_knowledge_rag", "coal_safety_qa_heldout_rag", "coal_safety_qa_rag"]
    monkeypatch.chdir(tmp_path)
    cfg = load_yaml(next(v for v in variants if v.stem == "coal_knowledge_rag"), resolve_func=True)
    assert cfg["doc_to_text"] == "{{prompt}}" and cfg["task"] == f"coal_knowledge{RAG_SUFFIX}"
    doc = cfg["custom_dataset"](**cfg["dataset_kwargs"])["test"][0]
    assert doc["prompt"].startswith("参考资料：\n[1] ") and doc["prompt"].endswith(f"问题：{doc['question']}")
    assert cfg["process_results"](doc, [doc["question"]])["fact_recall"] == 0.0  # the echo still earns nothing


def _arm_run(tmp_path, label, scores: dict[str, list[float]]):
    results, samples = {}, {}
    for task, values in scores.items():
        path = tmp_path / f"{label}-{task}.jsonl"
        path.write_text("".join(json.dumps({"doc_id": i, "fact_recall": v}) + "\n" for i, v in enumerate(values)))
        samples[task] = path
        results[task] = {"fact_recall,none": sum(values) / len(values)}
    return {"label": label, "samples": samples, "results": {
        "results": results, "higher_is_better": {t: {"fact_recall": True} for t in scores},
        "n-samples": {t: {"effective": len(v)} for t, v in scores.items()}}}


@pytest.mark.parametrize(("base_rag", "tuned_rag", "tuned", "decision"), [
    (0.6, 0.6, 0.1, "retrieve"),  # retrieval alone answers; tuning adds nothing once passages are there
    (0.3, 0.7, 0.3, "both"),  # retrieval helps the tuned model, and tuning helps with retrieval
    (0.0, 0.3, 0.3, "tune"),  # tuning beats base, retrieval adds nothing
    (0.0, 0.0, 0.0, "neither"),
])
def test_tune_retrieve_or_both(tmp_path, base_rag, tuned_rag, tuned, decision):
    n, wobble = 30, [0.02 * (i % 3) for i in range(30)]
    base = _arm_run(tmp_path, "base", {"k": wobble, "k_rag": [base_rag + w for w in wobble]})
    tuned_run = _arm_run(tmp_path, "tuned", {"k": [tuned + w for w in wobble], "k_rag": [tuned_rag + w for w in wobble]})
    arms = retrieval_arms(compare(base, tuned_run), RAG_SUFFIX)
    assert set(arms) == {"k"} and arms["k"]["decision"] == decision and arms["k"]["n"] == n
    lines = arms_verdict(arms)
    assert lines[0].startswith("Tune, retrieve, or both on k (fact_recall, n=30): base 0.020")
    assert lines[-1] == f"For this corpus (judged on k): {decision}."
