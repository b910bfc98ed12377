"""The judge path against a real `python -m llama_cpp.server` on 127.0.0.1 serving the embedded SmolLM2 GGUF: the
eval judge on a small samples file, and datagen curation on a few pairs. A 135M model's grades mean nothing;
the point is the path (request, constrained JSON reply, parse, cache) with a real server."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from helpers import COAL_DOCS

from domainft.datagen import run_datagen
from domainft.evaluate.judged import judge_runs
from domainft.extract import extract_for_plan
from domainft.plan import make_plan
from domainft.recipe import JudgeConfig, recipe_from_dict
from domainft.resources import folder


def tiny_rubric(home: str, name: str, tmp_path):
    """A shipped rubric with a short reason and few tokens: two CPU cores must finish in seconds."""
    data = yaml.safe_load((folder(home) / f"{name}.yaml").read_text(encoding="utf-8"))
    data["schema"]["properties"]["reason"]["maxLength"] = 40
    data["max_tokens"] = 64
    path = tmp_path / f"{name}-tiny.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.e2e
def test_eval_judge_grades_a_samples_file_through_llama_cpp_server(llama_judge_server, tmp_path):
    rows = [
        {"doc_id": 0, "doc": {"question": "煤矿井下作业职工安全培训不少于多少小时？", "answer": "不少于72小时。",
                              "source": "20-中华人民共和国矿山安全法实施条例.txt"}, "filtered_resps": ["72小时。"]},
        {"doc_id": 1, "doc": {"question": "矿长对什么负责？", "answer": "矿长对本企业的安全生产工作负责。",
                              "source": ""}, "filtered_resps": ["<think>嗯</think>矿长对安全生产负责。"]},
        {"doc_id": 2, "doc": {"question": "?", "choices": ["a", "b"], "answer": 0}, "filtered_resps": [[-1.0]]},
    ]
    samples = tmp_path / "samples_coal_safety_qa.jsonl"
    samples.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cfg = JudgeConfig(base_url=llama_judge_server, model="smollm2", concurrency=1, timeout_s=300, max_retries=1,
                      rubric=str(tiny_rubric("eval_tasks", "judge_rubric", tmp_path)))
    started = time.monotonic()
    result = judge_runs(cfg, {"tuned": {"coal_safety_qa": samples}}, tmp_path / "judge", progress=False)
    seconds = time.monotonic() - started
    qa = result["tuned"]["coal_safety_qa"]
    assert qa["n_judged"] + qa["n_failed"] == 2  # the multiple-choice row is not graded
    assert qa["n_judged"] > 0, qa["failed"]  # constrained to the schema's enum, the reply parses
    assert all(0.0 <= s <= 1.0 for s in qa["items"].values()) and qa["judge_model"] == "smollm2"
    assert qa["mean"] == pytest.approx(sum(qa["items"].values()) / qa["n_judged"])
    cached = (tmp_path / "judge" / "judge_cache.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(cached) == qa["n_judged"]
    started = time.monotonic()
    assert judge_runs(cfg, {"tuned": {"coal_safety_qa": samples}}, tmp_path / "judge", progress=False)["tuned"][
        "coal_safety_qa"]["items"] == qa["items"]
    print(f"\neval judge via llama_cpp.server: {qa}, {seconds:.1f} s; cached rerun {time.monotonic() - started:.2f} s")


@pytest.mark.e2e
def test_curation_rates_a_few_pairs_through_llama_cpp_server(llama_judge_server, tmp_path):
    rubric = tiny_rubric("datagen", "curate_rubric", tmp_path)
    recipe = recipe_from_dict({
        "name": "curate-llama", "domain": "coal",
        "extract": {"inputs": [str(COAL_DOCS)], "chunk_chars": 300, "overlap_chars": 30},
        "datagen": {"provider": "extractive", "prompts": "coal", "max_chunks": 2, "pairs_per_chunk": 2,
                    "curate": {"base_url": llama_judge_server, "model": "smollm2", "rubric": str(rubric),
                               "concurrency": 1, "timeout_s": 300, "max_retries": 1, "threshold": 1}},
    })
    plan = make_plan(recipe, run_dir=tmp_path / "run")
    extract_for_plan(plan)
    summary = run_datagen(plan, progress=False)
    out = plan.datagen_dir
    pairs = [json.loads(line) for line in (out / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    curation = [json.loads(line) for line in (out / "curation.jsonl").read_text(encoding="utf-8").splitlines()]
    assert pairs and len(curation) == len(pairs)
    assert summary.curate["rated"] + summary.curate["unrated"] == len(pairs)
    assert summary.curate["rated"] > 0, summary.curate
    assert all(kind.startswith("reply_") for kind in summary.curate["errors"]), summary.curate["errors"]
    for row in curation:
        if row["status"] != "unrated":
            assert set(row["scores"]) == {"faithfulness", "usefulness", "self_contained"}
            assert all(s in (0, 1, 2, 3) for s in row["scores"].values())
    set_aside = [json.loads(line) for line in (out / "set_aside.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(set_aside) == summary.curate["set_aside"]
    print(f"\ncuration via llama_cpp.server: {summary.curate}")
