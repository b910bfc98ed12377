"""The judge core: rubric files checked on load, the cache key, what counts as a verdict, and the path against a
fault-injecting OpenAI-compatible server on 127.0.0.1 (stub_teacher)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from stub_teacher import Stub

from domainft.errors import RecipeError, TeacherError
from domainft.evaluate.judged import judge_runs
from domainft.judge import JudgeItem, cache_key, judge_items, load_rubric, parse_verdict
from domainft.llm.replies import BadReply
from domainft.recipe import JudgeConfig, recipe_from_dict
from domainft.resources import folder

FIELDS = ("question", "answer", "reference", "source")


def _rubric(**kw):
    return load_rubric("judge_rubric", home="eval_tasks", base_dir=None, fields=FIELDS, where="eval.judge.rubric", **kw)


def _items(n: int) -> list[JudgeItem]:
    return [JudgeItem(f"q{i}", {"question": f"问题 {i}？", "answer": f"回答 {i}", "reference": f"参考 {i}",
                                "source": ""}) for i in range(n)]


def _cfg(url: str, **kw) -> JudgeConfig:
    return JudgeConfig(base_url=url, model="stub", **{"concurrency": 4, "timeout_s": 2, **kw})


# ---------------------------------------------------------------- rubric files


def _write_rubric(tmp_path: Path, change) -> Path:
    data = yaml.safe_load((folder("eval_tasks") / "judge_rubric.yaml").read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "rubric.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, needles", [
    (lambda d: d.update(scael=d.pop("scale")), ("unknown key 'scael'", "did you mean 'scale'")),
    (lambda d: d.pop("system"), ("'system'", "Field required")),
    (lambda d: d["schema"]["properties"].pop("score"), ("schema.properties.score", "integer")),
    (lambda d: d["schema"].update(required=["score"]), ("schema.required", "reason")),
    (lambda d: d["schema"]["properties"]["score"].update(enum=[0, 1, 2, 3, 4]), ("enum", "scale")),
    (lambda d: d.update(template="{{ questoin }}"), ("template", "questoin")),
    (lambda d: d.update(template="{{ ''.__class__.__mro__ }}"), ("template", "SecurityError")),
    (lambda d: d["criteria"][0].update(name="Bad Name"), ("criteria.0.name",)),
])
def test_a_bad_rubric_is_one_line_naming_file_and_key(tmp_path, change, needles):
    path = _write_rubric(tmp_path, change)
    with pytest.raises(RecipeError) as info:
        load_rubric(str(path), home="eval_tasks", base_dir=None, fields=FIELDS, where="eval.judge.rubric")
    line = info.value.one_line()
    assert str(path) in line and "\n" not in line
    for needle in needles:
        assert needle in line, line


def test_rubric_yaml_syntax_error_names_the_line_and_a_missing_rubric_the_key(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsystem: [unclosed\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="YAML syntax error") as info:
        load_rubric(str(path), home="eval_tasks", base_dir=None, fields=FIELDS, where="eval.judge.rubric")
    assert f"{path}:" in info.value.one_line()
    with pytest.raises(RecipeError) as info:
        load_rubric("judge_rubrc", home="eval_tasks", base_dir=None, fields=FIELDS, where="eval.judge.rubric")
    assert info.value.one_line().startswith("eval.judge.rubric: rubric 'judge_rubrc' not found")
    assert "did you mean 'judge_rubric'" in info.value.one_line()


def test_the_shipped_rubrics_load():
    assert _rubric().scale == {0: "wrong (or no answer)", 1: "partly right", 2: "right but incomplete",
                               3: "right and complete"}
    curate = load_rubric("curate_rubric", home="datagen", base_dir=None,
                         fields=("question", "answer", "source", "title", "heading"), where="datagen.curate.rubric")
    assert [c.name for c in curate.criteria] == ["faithfulness", "usefulness", "self_contained"]


def test_judge_config_needs_a_model_and_a_judge_provider():
    base = {"name": "x", "dataset": {"files": ["d.jsonl"]}}
    with pytest.raises(RecipeError, match="missing required key 'eval.judge.model'"):
        recipe_from_dict({**base, "eval": {"judge": {"base_url": "http://127.0.0.1:1/v1"}}})
    with pytest.raises(RecipeError, match="eval.judge.provider"):
        recipe_from_dict({**base, "eval": {"judge": {"provider": "extractive", "model": "m"}}})
    with pytest.raises(RecipeError, match="unknown key 'eval.judge.treshold'"):
        recipe_from_dict({**base, "eval": {"judge": {"model": "m", "base_url": "u", "treshold": 2}}})
    recipe = recipe_from_dict({**base, "eval": {"judge": {"model": "m", "base_url": "http://h/v1"}}})
    assert recipe.eval.judge.rubric == "judge_rubric" and recipe.eval.judge.concurrency == 8


# ---------------------------------------------------------------- cache key and verdicts


def test_cache_key_is_the_judged_text_the_rubric_and_the_judge(tmp_path):
    rubric = _rubric()
    cfg = JudgeConfig(base_url="http://127.0.0.1:8000/v1", model="m")
    item = _items(1)[0]
    key = cache_key(item, rubric, cfg)
    assert cache_key(JudgeItem("another-id", dict(item.fields)), rubric, cfg) == key  # the id is not judged
    assert cache_key(item, rubric, JudgeConfig(base_url="http://127.0.0.1:8000/v1/", model="m")) == key
    changed = [
        JudgeItem(item.id, {**item.fields, "answer": "另一个回答"}),
        JudgeItem(item.id, {**item.fields, "reference": "x"}),
        JudgeItem(item.id, {**item.fields, "source": "x"}),
    ]
    assert all(cache_key(c, rubric, cfg) != key for c in changed)
    assert cache_key(item, rubric, JudgeConfig(base_url="http://127.0.0.1:8000/v1", model="m2")) != key
    assert cache_key(item, rubric, JudgeConfig(base_url="http://127.0.0.1:9000/v1", model="m")) != key
    edited = _write_rubric(tmp_path, lambda d: d.update(system=d["system"] + " Be terse."))
    other = load_rubric(str(edited), home="eval_tasks", base_dir=None, fields=FIELDS, where="eval.judge.rubric")
    assert cache_key(item, other, cfg) != key


def test_a_score_outside_the_scale_is_no_verdict():
    rubric = _rubric()
    assert parse_verdict('{"score": 3, "reason": "ok"}', rubric) == ({"score": 3}, 3, "ok")
    assert parse_verdict('```json\n{"score": 0, "reason": "no",}\n```', rubric)[1] == 0
    assert parse_verdict('{"reason": "a raw\nnewline", "score": 1}', rubric)[0] == {"score": 1}
    for text, reason in [('{"score": 4, "reason": "x"}', "score_out_of_scale"),
                         ('{"score": -1, "reason": "x"}', "score_out_of_scale"),
                         ('{"score": 2.5, "reason": "x"}', "score_out_of_scale"),
                         ('{"score": true, "reason": "x"}', "score_out_of_scale"),
                         ('{"score": "3", "reason": "x"}', "score_out_of_scale"),
                         ('{"score": 3}', "schema"),
                         ("I think it deserves a 3", "invalid_json")]:
        with pytest.raises(BadReply) as info:
            parse_verdict(text, rubric)
        assert info.value.reason == reason, text


def test_out_of_scale_replies_end_not_judged_and_are_asked_again_next_time(tmp_path):
    cache = tmp_path / "cache.jsonl"
    with Stub(judge_score=7) as stub:
        outcome = judge_items(_items(3), _cfg(stub.url, max_retries=1), _rubric(), cache, progress=False)
        assert stub.calls == 6  # two attempts each
        assert outcome.failed == 3 and outcome.judged == 0
        assert {v.failure for v in outcome.verdicts.values()} == {"score_out_of_scale after 2 attempts"}
        assert all(v.score is None for v in outcome.verdicts.values())
        assert cache.read_text() == ""  # never cached as a success
        stub.judge_score = None
        again = judge_items(_items(3), _cfg(stub.url, max_retries=1), _rubric(), cache, progress=False)
    assert again.judged == 3 and again.failed == 0 and stub.calls == 9


def test_fault_injecting_judge_every_item_judged_or_reported_and_nothing_judged_twice(tmp_path):
    cache = tmp_path / "cache.jsonl"
    items = _items(40)
    with Stub(fault_rate=0.3, stall_s=3.0, seed=3) as stub:
        first = judge_items(items, _cfg(stub.url, concurrency=8, max_retries=1), _rubric(), cache, progress=False)
        assert set(stub.injected) == {"500", "429", "stall", "malformed"}
        assert set(first.verdicts) == {i.id for i in items}
        assert first.judged + first.failed == 40 and first.failed > 0  # one retry: some run out
        for verdict in first.verdicts.values():
            assert (verdict.score is not None) != (verdict.failure is not None)
            if verdict.judged:
                assert verdict.score in (0, 1, 2, 3) and verdict.reason.startswith("stub verdict")
        assert first.retries > 0 and first.errors
        keys = [json.loads(line)["key"] for line in cache.read_text().splitlines()]
        assert len(keys) == len(set(keys)) == first.judged
        # The rerun asks again for exactly the items that failed, once each when nothing goes wrong.
        stub.fault_rate = 0.0
        calls = stub.calls
        second = judge_items(items, _cfg(stub.url, concurrency=8), _rubric(), cache, progress=False)
        assert stub.calls - calls == first.failed
        assert second.cached == first.judged and second.judged == first.failed and second.failed == 0
        for item_id, verdict in first.verdicts.items():
            if verdict.judged:
                assert second.verdicts[item_id].score == verdict.score and second.verdicts[item_id].cached
        calls = stub.calls
        third = judge_items(items, _cfg(stub.url), _rubric(), cache, progress=False)
        assert stub.calls == calls and third.cached == 40  # an unchanged item is never judged twice


def test_a_torn_cache_line_is_dropped_and_that_item_judged_again(tmp_path):
    cache = tmp_path / "cache.jsonl"
    with Stub() as stub:
        judge_items(_items(4), _cfg(stub.url), _rubric(), cache, progress=False)
        lines = cache.read_text().splitlines(keepends=True)
        cache.write_text("".join(lines[:-1]) + lines[-1][:25])  # killed mid-write
        calls = stub.calls
        outcome = judge_items(_items(4), _cfg(stub.url), _rubric(), cache, progress=False)
    assert stub.calls - calls == 1 and outcome.cached == 3 and outcome.judged == 1
    assert all(json.loads(line) for line in cache.read_text().splitlines())


def test_unreachable_judge_and_missing_key_are_one_line_teacher_errors_naming_the_key(tmp_path, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(TeacherError) as info:
        judge_items(_items(2), _cfg(url), _rubric(), tmp_path / "c.jsonl", where="datagen.curate", progress=False)
    line = info.value.one_line()
    assert line.startswith("datagen.curate.base_url:") and url in line and "\n" not in line
    monkeypatch.delenv("DOMAINFT_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(TeacherError) as info:
        judge_items(_items(2), _cfg(url, api_key_env="DOMAINFT_TEST_JUDGE_KEY"), _rubric(), tmp_path / "c.jsonl",
                    progress=False)
    assert info.value.one_line() == "eval.judge.api_key_env: environment variable DOMAINFT_TEST_JUDGE_KEY is not set"


def test_a_judge_gone_midway_stops_with_one_line_keeping_the_verdicts(tmp_path, monkeypatch):
    import domainft.judge.core as core

    monkeypatch.setattr(core, "UNREACHABLE_S", 1.0)
    monkeypatch.setattr(core, "BACKOFF_INITIAL_S", 0.05)
    stub = Stub(latency_s=0.05)
    stub.__enter__()
    original = core._Judging._attempt
    served = {"n": 0}

    async def attempt_then_vanish(self, item):
        result = await original(self, item)
        served["n"] += 1
        if served["n"] == 3:
            stub.__exit__(None, None, None)
        return result

    monkeypatch.setattr(core._Judging, "_attempt", attempt_then_vanish)
    cache = tmp_path / "c.jsonl"
    with pytest.raises(TeacherError) as info:
        judge_items(_items(8), _cfg(stub.url, concurrency=1, max_retries=50), _rubric(), cache, progress=False)
    assert "lost the judge" in info.value.one_line() and "eval.judge.base_url" in info.value.one_line()
    assert len(cache.read_text().splitlines()) == 3


# ---------------------------------------------------------------- eval: judge_runs


def _samples(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _qa_row(doc_id: int, answer: str) -> dict:
    return {"doc_id": doc_id, "doc": {"id": f"i{doc_id}", "question": f"问题{doc_id}？", "answer": f"参考{doc_id}",
                                      "keywords": [], "source": "19-中华人民共和国矿山安全法.txt"},
            "target": f"参考{doc_id}", "resps": [[answer]], "filtered_resps": [answer], "rouge_l_char": 0.5}


def test_judge_runs_grades_generated_answers_and_skips_multiple_choice(tmp_path):
    base = _samples(tmp_path / "samples_qa_base.jsonl", [_qa_row(i, f"<think>想一想</think>回答{i}") for i in range(5)])
    tuned = _samples(tmp_path / "samples_qa_tuned.jsonl", [_qa_row(i, f"回答{i}（微调）") for i in range(5)])
    mc = _samples(tmp_path / "samples_mc.jsonl", [{"doc_id": 0, "doc": {"question": "?", "choices": ["a", "b"],
                                                                          "answer": 0}, "filtered_resps": [[-1.0]]}])
    runs = {"base": {"qa": base, "mc": mc}, "tuned": {"qa": tuned}}
    with Stub() as stub:
        cfg = _cfg(stub.url)
        result = judge_runs(cfg, runs, tmp_path / "judge", progress=False)
        assert stub.calls == 10  # five answers in each run; the multiple-choice row is not graded
        assert not any("<think>" in p for p in stub.prompts)
        assert all("回答" in p and "参考" in p for p in stub.prompts)
        again = judge_runs(cfg, runs, tmp_path / "judge", progress=False)
        assert stub.calls == 10 and again == result  # cached in out_dir/judge_cache.jsonl
    assert (tmp_path / "judge" / "judge_cache.jsonl").exists()
    qa = result["base"]["qa"]
    assert qa["n_judged"] == 5 and qa["n_failed"] == 0 and qa["failed"] == [] and qa["judge_model"] == "stub"
    assert set(qa["items"]) == set(range(5)) and all(s in (0, 1 / 3, 2 / 3, 1.0) for s in qa["items"].values())
    assert qa["mean"] == pytest.approx(sum(qa["items"].values()) / 5)
    assert result["base"]["mc"] == {"mean": None, "n_judged": 0, "n_failed": 0, "failed": [], "items": {},
                                    "judge_model": "stub"}


def test_judge_runs_reports_unjudged_answers_apart_from_the_mean(tmp_path):
    base = _samples(tmp_path / "s.jsonl", [_qa_row(i, f"回答{i}") for i in range(3)])
    with Stub(judge_score=9) as stub:
        result = judge_runs(_cfg(stub.url, max_retries=0), {"base": {"qa": base}}, tmp_path / "j", progress=False)
    qa = result["base"]["qa"]
    assert qa["mean"] is None and qa["n_judged"] == 0 and qa["n_failed"] == 3 and qa["items"] == {}
    assert qa["failed"] == [{"doc_id": i, "reason": "score_out_of_scale after 1 attempts"} for i in range(3)]
