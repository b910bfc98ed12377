"""Real lm-eval runs on the tiny random Llama: the task folders alone, and run_eval base vs tuned."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import COAL_DOCS

from domainft.evaluate import run_eval
from domainft.extract import extract_for_plan
from domainft.plan import make_plan
from domainft.recipe import recipe_from_dict
from domainft.resources import folder

pytestmark = pytest.mark.e2e

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def test_plain_lm_eval_runs_coal_safety_mc_from_a_copied_folder(tmp_path, tiny_model):
    """No domainft in the call: the folder is copied out of the repo and lm-eval runs from elsewhere."""
    tasks = shutil.copytree(folder("eval_tasks"), tmp_path / "my_tasks")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--include_path", str(tasks), "--tasks", "coal_safety_mc",
         "--model", "hf", "--model_args", f"pretrained={tiny_model}", "--limit", "5",
         "--output_path", str(tmp_path / "out")],
        cwd=workdir, capture_output=True, text=True, timeout=600, env={**os.environ, **OFFLINE},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert results["n-samples"]["coal_safety_mc"]["effective"] == 5
    assert 0.0 <= results["results"]["coal_safety_mc"]["acc,none"] <= 1.0


def _adapter(base, out):
    """A small LoRA made directly with PEFT; non-zero B so the tuned model really differs from base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                        task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(out)


def _eval_plan(tmp_path, tiny_model, **sections):
    """A coal recipe on the tiny Llama with a PEFT adapter and a one-item held-out split."""
    (tmp_path / "docs").mkdir()
    recipe = recipe_from_dict({
        "name": "e2e-eval",
        "domain": "coal",
        "model": {"base": "embedded:tiny-random-llama", "system_prompt": "你是煤矿安全专家。"},
        "extract": {"inputs": [str(tmp_path / "docs")]},
        "datagen": {"provider": "extractive"},
        "eval": {"limit": 2, "max_new_tokens": 8},
        **sections,
    })
    plan = make_plan(recipe, run_dir=tmp_path / "run")
    _adapter(tiny_model, plan.adapter_dir)
    split = plan.eval_split_files["test"]
    split.parent.mkdir(parents=True)
    split.write_text(json.dumps({"instruction": "井下作业地点的空气温度不得超过多少？", "input": "",
                                 "output": "井下作业地点的空气温度不得超过28℃。"}, ensure_ascii=False) + "\n",
                     encoding="utf-8")
    return plan


def test_run_eval_base_vs_tuned_writes_the_report(tmp_path, tiny_model):
    plan = _eval_plan(tmp_path, tiny_model)
    report_md = run_eval(plan, limit=None)

    assert report_md == plan.eval_dir / "report.md"
    report = json.loads((plan.eval_dir / "report.json").read_text(encoding="utf-8"))
    assert set(report["tasks"]) == {"coal_safety_mc", "coal_safety_qa", "coal_safety_qa_heldout"}
    assert report["tasks"]["coal_safety_qa_heldout"]["n"] == 1
    assert report["tasks"]["coal_safety_mc"]["metrics"]["acc"]["base"] in (0.0, 0.5, 1.0)
    assert report["samples"]["coal_safety_qa"][0]["reference"].startswith("新进矿山")
    assert report["verdict"]
    assert (plan.eval_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report_md.read_text(encoding="utf-8")
    assert "| coal_safety_qa | **fact_recall** |" in text and "## Sample answers" in text
    assert "| coal_safety_qa_heldout | **fact_recall** |" in text
    # What each task measures, from provenance: no document of this run holds the hand-written items' passages.
    assert "- `coal_safety_qa`: answers about text it never read" in text
    assert "- `coal_safety_qa_heldout`: answers about text it never read (questions on passages held out" in text
    paired = report["tasks"]["coal_safety_qa"]["metrics"]["fact_recall"]["paired"]
    assert paired["n"] == report["tasks"]["coal_safety_qa"]["n"] and paired["low"] <= paired["mean_diff"] <= paired["high"]
    for label in ("base", "tuned"):
        assert list((plan.eval_dir / "lm_eval" / label).rglob("samples_coal_safety_qa_*.jsonl"))
    assert "peft=" in " ".join(report["commands"]["tuned"]) and "peft=" not in " ".join(report["commands"]["base"])

    # Nothing changed: the second call reuses both lm-eval runs and only rewrites the report.
    run_eval(plan, limit=None)
    again = json.loads((plan.eval_dir / "report.json").read_text(encoding="utf-8"))
    assert again["runs"]["base"]["reused"] and again["runs"]["tuned"]["reused"]


def _per_item(root):
    """task -> doc_id -> (the filtered answer, every metric) from lm-eval's samples files under root."""
    items = {}
    for path in root.rglob("samples_*.jsonl"):
        task = path.stem.removeprefix("samples_").rsplit("_", 1)[0]
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            metrics = {k: rec[k] for k in rec.get("metrics", [])}
            items.setdefault(task, {})[rec["doc_id"]] = (rec["filtered_resps"], metrics)
    return items


def test_printed_lm_eval_commands_give_the_same_items_and_scores(tmp_path, tiny_model):
    """`domainft eval --print-commands`, run by hand in a shell, reproduces domainft eval item for item: base, tuned,
    and the exported GGUF behind a llama_cpp.server the script starts and stops itself (free answers through
    local-chat-completions, multiple choice through lm-eval's gguf model on chat-templated prompts)."""
    from domainft.evaluate.run import hand_commands

    plan = _eval_plan(tmp_path, tiny_model, export={"quantizations": ["q8_0"]},
                      eval={"limit": 2, "max_new_tokens": 8, "retrieval": "bm25", "retrieval_top_k": 1})
    shutil.copy(COAL_DOCS / "19-中华人民共和国矿山安全法.txt", tmp_path / "docs")
    extract_for_plan(plan)  # the chunks the retrieval arms search
    _export_gguf(plan, tiny_model)
    run_eval(plan, limit=None)
    script = hand_commands(plan)
    assert script.count("\nlm_eval run ") == 3 and "--system_instruction" in script
    assert script.count("\npython -m domainft.evaluate.lm_gguf run --model domainft-gguf ") == 1
    assert "-m llama_cpp.server" in script
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"  # lm_eval from the wrapper's venv
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(["bash", "-eu", "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = {"coal_safety_mc", "coal_safety_qa", "coal_safety_qa_heldout"}
    rag = {"coal_safety_qa_rag", "coal_safety_qa_heldout_rag"}  # the retrieval arms: base and tuned only
    for label, tasks in (("base", expected | rag), ("tuned", expected | rag), ("q8_0", expected - {"coal_safety_mc"}),
                         ("q8_0_mc", {"coal_safety_mc_chat"})):
        ours = _per_item(plan.eval_dir / "lm_eval" / label)
        by_hand = _per_item(plan.eval_dir / "by_hand" / label)
        assert set(ours) == tasks, ours.keys()
        assert by_hand == ours, label
    assert (plan.eval_dir / "by_hand" / "q8_0.server.log").exists()


def _export_gguf(plan, tiny_model, quant="q8_0"):
    """What `domainft export` leaves for eval: the adapter merged (PEFT), llama.cpp's converter, its quantizer,
    and export.json naming the file (the engine's merge is tested in the engine and export suites)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from domainft.export.gguf import convert_hf_to_gguf, quantize

    merged = plan.export_dir / "merged"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), plan.adapter_dir)
    model.merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(merged)
    logs = plan.run_dir / "logs"
    f16 = convert_hf_to_gguf(merged, plan.export_dir / "e2e-eval-f16.gguf", log_path=logs / "convert.log")
    path = quantize(f16, plan.export_dir / f"e2e-eval-{quant}.gguf", quant, log_path=logs / "quantize.log")
    files = [{"path": p.name, "kind": "gguf", "quant": q, "bytes": p.stat().st_size, "sha256": ""}
             for p, q in ((f16, "f16"), (path, quant))]
    (plan.export_dir / "export.json").write_text(json.dumps({"files": files}), encoding="utf-8")
    return path


def test_gguf_is_scored_by_lm_eval_through_llama_cpp_server_and_answers_as_chat_does(tmp_path, tiny_model, cli):
    """The exported GGUF gets its own column, scored by lm-eval's local-chat-completions against a llama_cpp.server
    that domainft starts on a free loopback port and stops; its per-item answers are what `domainft chat` gives on
    that GGUF with greedy decoding. Rerun: every lm-eval run is reused; a new GGUF reruns only the GGUF's."""
    import socket

    plan = _eval_plan(tmp_path, tiny_model, export={"quantizations": ["q8_0"]})
    gguf = _export_gguf(plan, tiny_model)

    run_eval(plan, limit=None)
    report = json.loads((plan.eval_dir / "report.json").read_text(encoding="utf-8"))
    assert report["gguf_labels"] == ["q8_0"]
    qa = report["tasks"]["coal_safety_qa"]
    g = qa["metrics"]["fact_recall"]["gguf"]["q8_0"]
    assert 0.0 <= g["value"] <= 1.0 and g["paired"]["n"] == qa["n"] == 2  # same items as base and tuned
    assert "q8_0" in report["tasks"]["coal_safety_qa_heldout"]["metrics"]["fact_recall"]["gguf"]
    # Multiple choice too: lm-eval's gguf model on the same chat-templated prompts, paired with the tuned HF model.
    mc = report["tasks"]["coal_safety_mc"]
    assert mc["gguf_missing"] == [] and mc["metrics"]["acc"]["gguf"]["q8_0"]["paired"]["n"] == mc["n"] == 2
    assert "--model domainft-gguf" in " ".join(report["commands"]["q8_0_mc"])
    assert any(line.startswith("q8_0 ") for line in report["verdict"]), report["verdict"]
    text = (plan.eval_dir / "report.md").read_text(encoding="utf-8")
    assert "| task | metric | n | base | tuned | q8_0 |" in text and "## Quantization" in text
    assert "| q8_0 |" in text.split("## Sample answers")[1]  # the GGUF's answer beside base and tuned
    command = " ".join(report["commands"]["q8_0"])
    assert "local-chat-completions" in command and "--apply_chat_template" in command
    # The server ran from domainft and is gone: its log is in the run folder and its port is closed.
    log = (plan.eval_dir / "lm_eval" / "q8_0.server.log").read_text(encoding="utf-8")
    port = int(log.split("--port ")[1].split()[0])
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0

    # The GGUF's answers, item for item, are what `domainft chat` says on that GGUF with greedy decoding.
    rows = [json.loads(line) for path in (plan.eval_dir / "lm_eval" / "q8_0").rglob("samples_coal_safety_qa_2*.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines()]
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps([r["doc"]["question"] for r in rows], ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "chat.json"
    result = cli("chat", str(gguf), "--questions", str(questions), "-o", str(out), "-s", "sampling.temperature=0",
                 "-s", "sampling.repetition_penalty=1.0", "-s", "sampling.max_new_tokens=8",
                 "-s", "model.system_prompt=你是煤矿安全专家。")
    assert result.code == 0, result.stderr[-2000:]
    chat = [r["answer"] for r in json.loads(out.read_text(encoding="utf-8"))["results"]]
    assert chat == [r["filtered_resps"][0] for r in rows]

    # Unchanged: nothing is scored again. A new GGUF: only its run reruns.
    run_eval(plan, limit=None)
    again = json.loads((plan.eval_dir / "report.json").read_text(encoding="utf-8"))
    assert all(run["reused"] for run in again["runs"].values())
    _export_gguf(plan, tiny_model)
    run_eval(plan, limit=None)
    third = json.loads((plan.eval_dir / "report.json").read_text(encoding="utf-8"))
    assert {label: run["reused"] for label, run in third["runs"].items()} == {"base": True, "tuned": True,
                                                                               "q8_0": False}


def test_eval_judge_through_a_real_llama_cpp_server_sits_beside_rouge(tmp_path, tiny_model, smollm2_server):
    """eval.judge in a recipe: domainft eval grades each free answer through a real llama_cpp.server (SmolLM2; the
    grades mean little, the path is the point), the report names the judge model, and a rerun grades nothing."""
    plan = _eval_plan(tmp_path, tiny_model, eval={
        "limit": 2, "max_new_tokens": 8,
        "judge": {"provider": "openai", "model": "smollm2", "base_url": smollm2_server, "concurrency": 2},
    })
    run_eval(plan, limit=None)
    report = json.loads((plan.eval_dir / "report.json").read_text(encoding="utf-8"))
    judged = report["tasks"]["coal_safety_qa"]["metrics"]["judge"]
    assert judged["judge_model"] == "smollm2" and 0.0 <= judged["tuned"] <= 1.0
    assert "judge" not in report["tasks"]["coal_safety_mc"]["metrics"]  # multiple choice is not graded
    assert "graded each free answer" in (plan.eval_dir / "report.md").read_text(encoding="utf-8")
    cache = plan.eval_dir / "judge" / "judge_cache.jsonl"
    lines = cache.read_text(encoding="utf-8").splitlines()
    assert lines

    run_eval(plan, limit=None)  # unchanged answers: every grade from the cache
    assert cache.read_text(encoding="utf-8").splitlines() == lines
