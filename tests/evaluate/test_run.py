"""run_eval's decisions before lm-eval starts: tasks, command line, held-out variant, errors; the verdict."""

import importlib.util
import json

import pytest

from domainft.errors import UserError
from domainft.evaluate import run_eval
from domainft.evaluate.argv import lm_eval_argv
from domainft.evaluate.report import compare, verdict
from domainft.evaluate.tasks import heldout_task, resolve_tasks
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict
from domainft.resources import folder


def _plan(tmp_path, **changes):
    data = {
        "name": "evaltest",
        "domain": "coal",
        "model": {"base": "embedded:tiny-random-llama", "system_prompt": "你是煤矿安全专家。"},
        "dataset": {"files": ["train.jsonl"]},
        **changes,
    }
    return make_plan(recipe_from_dict(data), run_dir=tmp_path / "run")


def test_default_tasks_are_the_domains_group(tmp_path):
    assert resolve_tasks(_plan(tmp_path)) == ["coal_safety"]
    assert resolve_tasks(_plan(tmp_path, domain="iso")) == ["iso_directives"]


def test_unknown_task_is_a_one_line_error_with_a_suggestion(tmp_path):
    with pytest.raises(UserError) as err:
        resolve_tasks(_plan(tmp_path, eval={"tasks": ["coal_safety_qaa"]}))
    assert err.value.where == "eval.tasks"
    assert "did you mean 'coal_safety_qa'" in err.value.one_line()


def test_domain_without_tasks_needs_a_task_list_or_datagen(tmp_path):
    with pytest.raises(UserError, match="no eval tasks for domain 'general'"):
        resolve_tasks(_plan(tmp_path, domain="general"))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_backend_without_vllm_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="needs the vllm package") as err:
        run_eval(_plan(tmp_path), backend="vllm")
    assert "\n" not in err.value.one_line()


def test_missing_adapter_names_the_folder(tmp_path):
    plan = _plan(tmp_path)
    with pytest.raises(UserError, match="run train first") as err:
        run_eval(plan, limit=1)
    assert err.value.where == str(plan.adapter_dir)


def test_command_line(tmp_path):
    plan = _plan(tmp_path, sampling={"repetition_penalty": 1.1}, eval={"max_new_tokens": 64})
    argv = lm_eval_argv(plan, label="tuned", tasks=["coal_safety"], limit=5, backend="hf", base_path="/m/base",
                        adapter=plan.adapter_dir, trained=plan.adapter_dir, out_root=plan.eval_dir / "lm_eval")
    flags = dict(zip(argv, argv[1:]))
    assert argv[1:4] == ["-m", "lm_eval", "run"]
    assert flags["--model"] == "hf"
    assert flags["--model_args"].startswith(f"pretrained=/m/base,peft={plan.adapter_dir}")
    assert flags["--include_path"] == str(folder("eval_tasks"))
    assert flags["--system_instruction"] == "你是煤矿安全专家。"
    assert flags["--limit"] == "5"
    # No repetition penalty for scoring, whatever sampling says: HF and llama.cpp apply it differently.
    assert flags["--gen_kwargs"] == "do_sample=False,max_gen_toks=64"
    assert "--apply_chat_template" in argv and "--log_samples" in argv
    assert flags["--output_path"] == str(plan.eval_dir / "lm_eval" / "tuned")
    base = lm_eval_argv(plan, label="base", tasks=["coal_safety"], limit=None, backend="vllm", base_path="/m/base",
                        adapter=None, trained=plan.adapter_dir, out_root=plan.eval_dir / "lm_eval")
    assert "peft=" not in " ".join(base) and "--limit" not in base and "vllm" in base


def test_heldout_split_becomes_a_task_lm_eval_loads(tmp_path, monkeypatch):
    from lm_eval.tasks._yaml_loader import load_yaml

    (tmp_path / "docs").mkdir()
    plan = _plan(tmp_path, datagen={"provider": "extractive"}, extract={"inputs": ["docs"]})
    split = plan.eval_split_files["test"]
    split.parent.mkdir(parents=True)
    rows = [{"instruction": "井下作业地点的空气温度上限是多少？", "input": "", "output": "不得超过28℃。"},
            {"instruction": "Which verbal form?", "input": "requirement", "output": "shall"}]
    split.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    yaml_path = heldout_task(plan, ["coal_safety"])
    assert yaml_path == plan.eval_dir / "tasks" / "coal_safety_qa_heldout.yaml"
    monkeypatch.chdir(tmp_path)  # lm-eval runs from anywhere: every path in the variant is absolute
    cfg = load_yaml(yaml_path, resolve_func=True)
    assert cfg["task"] == "coal_safety_qa_heldout" and cfg["output_type"] == "generate_until"
    docs = cfg["custom_dataset"](**cfg["dataset_kwargs"])["test"]
    assert docs[0]["question"] == rows[0]["instruction"] and docs[0]["answer"] == "不得超过28℃。"
    assert docs[1]["question"] == "Which verbal form?\nrequirement"


def test_a_domain_without_tasks_is_evaluated_on_the_runs_own_data(tmp_path, monkeypatch):
    """No eval_tasks/<domain> folder: the held-out split and the knowledge probe become variants of the generic
    free-answer task (eval_tasks/_run/run_qa.yaml), which lm-eval loads and scores like any other."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from domainft.evaluate.tasks import run_made_tasks

    (tmp_path / "docs").mkdir()
    plan = _plan(tmp_path, domain="general", datagen={"provider": "extractive"}, extract={"inputs": ["docs"]})
    assert resolve_tasks(plan) == []
    plan.datagen_dir.mkdir(parents=True)
    row = {"instruction": "What does clause 4.1 require?", "input": "", "output": "Tests shall be repeatable."}
    plan.eval_split_files["test"].write_text(json.dumps(row) + "\n", encoding="utf-8")
    probe = {"question": "Under clause 4.1, how must tests behave?", "answer": "Tests shall be repeatable.",
             "source": {"file": "rules.md", "heading_path": ["4"], "chunk_id": "abc"}}
    plan.knowledge_file.write_text(json.dumps(probe) + "\n", encoding="utf-8")
    made = run_made_tasks(plan, [])
    assert {k: p.name for k, p in made.items()} == {"heldout": "general_heldout.yaml",
                                                    "knowledge": "general_knowledge.yaml"}
    monkeypatch.chdir(tmp_path)
    cfg = load_yaml(made["knowledge"], resolve_func=True)
    doc = cfg["custom_dataset"](**cfg["dataset_kwargs"])["test"][0]
    assert (doc["chunk_id"], doc["source"]) == ("abc", "rules.md")
    scores = cfg["process_results"](doc, [doc["question"]])
    assert scores["fact_recall"] == scores["novel_recall"] == 0.0  # restating the question earns nothing
    assert cfg["process_results"](doc, ["They shall be repeatable."])["novel_recall"] == 1.0


def test_missing_heldout_split_is_a_user_error(tmp_path):
    (tmp_path / "docs").mkdir()
    plan = _plan(tmp_path, datagen={"provider": "extractive"}, extract={"inputs": ["docs"]})
    with pytest.raises(UserError, match="run datagen before eval"):
        heldout_task(plan, ["coal_safety"])


def _results(values: dict[str, dict[str, float]], n: int) -> dict:
    return {"results": {"results": {t: {f"{k},none": v for k, v in m.items()} for t, m in values.items()},
                        "higher_is_better": {t: {k: True for k in m if not k.endswith("_stderr")}
                                             for t, m in values.items()},
                        "n-samples": {t: {"original": 30, "effective": n} for t in values}}}


def test_verdict_is_honest_when_tuned_does_not_win():
    base = _results({"coal_safety_qa": {"rouge_l_char": 0.30, "rouge_l_char_stderr": 0.01, "keyword_recall": 0.2},
                     "coal_safety_mc": {"acc": 0.5, "acc_stderr": 0.1}}, n=5)
    tuned = _results({"coal_safety_qa": {"rouge_l_char": 0.25, "rouge_l_char_stderr": 0.01, "keyword_recall": 0.4},
                      "coal_safety_mc": {"acc": 0.6, "acc_stderr": 0.1}}, n=5)
    tasks = compare(base, tuned)
    assert tasks["coal_safety_qa"]["primary"] == "rouge_l_char"
    assert tasks["coal_safety_qa"]["metrics"]["keyword_recall"]["delta"] == pytest.approx(0.2)
    lines = verdict(tasks)
    assert any("does not beat the base model on coal_safety_qa" in line for line in lines)
    assert any("coal_safety_mc" in line and "may be noise" in line for line in lines)
    assert any("Few items" in line for line in lines)


def test_report_files_from_lm_eval_shaped_results(tmp_path):
    from domainft.evaluate.report import write_report

    base = {**_results({"iso_verbal_forms": {"acc": 0.25, "acc_stderr": 0.1}}, n=40), "label": "base",
            "results_path": tmp_path / "b.json", "samples": {}, "seconds": 1.0, "reused": False}
    tuned = {**_results({"iso_verbal_forms": {"acc": 0.75, "acc_stderr": 0.1}}, n=40), "label": "tuned",
             "results_path": tmp_path / "t.json", "samples": {}, "seconds": 1.0, "reused": False}
    md = write_report(tmp_path, base=base, tuned=tuned, meta={"recipe": "r"})
    assert "The tuned model beats the base model on iso_verbal_forms" in md.read_text()
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "report.json").read_text())["tasks"]["iso_verbal_forms"]["metrics"]["acc"]["delta"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md", "report.png"]
