"""`domainft chat --rag`: the run's best passages go before the question and the answer cites them (file and
section), on the run's GGUF and on base + adapter."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import COAL_DOCS
from peft_helpers import make_random_adapter

from domainft.export.gguf import convert_hf_to_gguf
from domainft.extract import extract_for_plan
from domainft.plan import make_plan
from domainft.recipe import load_recipe

pytestmark = pytest.mark.e2e
QUESTION = "依据《矿山安全法》，每个矿井必须有几个以上能行人的安全出口？"


@pytest.mark.parametrize("backend", ["hf", "gguf"])
def test_answers_cite_the_retrieved_clauses(tmp_path, tiny_model, cli, backend):
    recipe = tmp_path / "rag.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "rag-chat", "domain": "coal", "model": {"base": "embedded:tiny-random-llama"},
        "extract": {"inputs": [str(COAL_DOCS)], "chunk_chars": 600, "overlap_chars": 60},
        "datagen": {"provider": "extractive"}, "eval": {"retrieval_top_k": 2},
        "export": {"quantizations": ["f16"]},
    }, allow_unicode=True), encoding="utf-8")
    run_dir = tmp_path / "run"
    plan = make_plan(load_recipe(recipe), run_dir=run_dir)
    extract_for_plan(plan)  # the chunks --rag searches
    if backend == "hf":
        make_random_adapter(tiny_model, plan.adapter_dir)
    else:
        plan.export_dir.mkdir(parents=True)
        convert_hf_to_gguf(tiny_model, plan.export_dir / "rag-chat-f16.gguf", log_path=tmp_path / "convert.log")
        (plan.export_dir / "export.json").write_text(json.dumps({"modelfile_from": "rag-chat-f16.gguf"}))
    args = ["chat", recipe, "--run-dir", run_dir, "--backend", backend, "-s", "sampling.max_new_tokens=6"]
    one = cli(*args, "--rag", "-q", QUESTION)
    assert one.code == 0, one.stderr[-2000:]
    sources = one.stdout.split("Sources:\n", 1)[1].splitlines()
    assert sources[0].startswith("[1] 19-中华人民共和国矿山安全法.txt › ") and sources[1].startswith("[2] ")

    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps([QUESTION, "Which document limits gas emissions?"], ensure_ascii=False))
    out = tmp_path / "results.json"
    batch = cli(*args, "--rag", "--questions", questions, "-o", out)
    assert batch.code == 0, batch.stderr[-2000:]
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert results[0]["sources"][0] == sources[0] and all(r["answer"] is not None for r in results)

    bare = cli("chat", tmp_path / "missing.gguf", "--rag", "-q", QUESTION)
    assert bare.code != 0 and "--rag searches a run's own chunks" in bare.stderr
