"""Whether an eval item is "seen" is computed per run from provenance, never declared by the task: the demo recipe's
own data (extract and datagen, offline) against the shipped tasks, the held-out split and the knowledge probe."""

import json

from helpers import RECIPES

from domainft.datagen import run_datagen
from domainft.evaluate.provenance import ELSEWHERE, HELD_OUT, TRAINED, item_counts, run_text
from domainft.extract import extract_for_plan
from domainft.plan import make_plan
from domainft.recipe import load_recipe
from domainft.resources import folder


def _items(name: str) -> list[dict]:
    path = next(folder("eval_tasks").rglob(name))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _rows(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_demo_trains_on_none_of_coal_safety_qa_and_on_every_knowledge_item(tmp_path):
    plan = make_plan(load_recipe(RECIPES / "demo-coal-smollm2.yaml"), run_dir=tmp_path / "run")
    extract_for_plan(plan)
    run_datagen(plan, progress=False)
    run = run_text(plan)
    assert {"14-煤层气（煤矿瓦斯）排放标准.txt", "19-中华人民共和国矿山安全法.txt"} <= run.documents

    # Every hand-written QA item cites documents 10, 20, 25 or 60: none is a document of the demo.
    qa = _items("coal_safety_qa.jsonl")
    assert {i["source"].split("-")[0] for i in qa} == {"10", "20", "25", "60"}
    assert item_counts(run, qa) == {"n": len(qa), TRAINED: 0, HELD_OUT: 0, ELSEWHERE: len(qa)}
    # The multiple-choice items on the mine-safety law (document 19) quote text the demo trains on or holds out.
    mc = _items("coal_safety_mc.jsonl")
    on_19 = [i for i in mc if i["source"].startswith("19-")]
    assert len(on_19) == 8 and all(run.where(i) in (TRAINED, HELD_OUT) for i in on_19)
    assert sum(run.where(i) == TRAINED for i in on_19) >= 4
    assert all(run.where(i) == ELSEWHERE for i in mc if not i["source"].startswith("19-"))

    # datagen's held-out split is held out; its knowledge probe is on passages the run trains on.
    test = [{"question": r["instruction"], "answer": r["output"]} for r in _rows(plan.datagen_dir / "test.jsonl")]
    assert test and all(run.where(i) == HELD_OUT for i in test)
    probe = [{"question": r["question"], "answer": r["answer"], "chunk_id": r["source"]["chunk_id"]}
             for r in _rows(plan.knowledge_file)]
    assert probe and all(run.where(i) == TRAINED for i in probe)
