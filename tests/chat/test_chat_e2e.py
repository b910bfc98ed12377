"""Chat against real models: a GGUF through llama-cpp-python, base + adapter through transformers + PEFT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peft_helpers import make_random_adapter

from domainft.chat import ChatSettings, ask, interactive, load_chat_model, run_batch
from domainft.export.gguf import convert_hf_to_gguf
from domainft.recipe import SamplingConfig

pytestmark = pytest.mark.e2e
SHORT = ChatSettings("You are terse.", SamplingConfig(temperature=0.7, max_new_tokens=12))


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_model) -> Path:
    out = tmp_path_factory.mktemp("gguf")
    return convert_hf_to_gguf(tiny_model, out / "tiny-f16.gguf", log_path=out / "convert.log")


def test_batch_writes_one_entry_per_question_even_when_one_fails(tiny_gguf, tmp_path):
    questions = tmp_path / "questions.jsonl"
    rows = [
        json.dumps({"question": "What must be checked before blasting?", "answer": "gas"}),
        json.dumps({"question": "word " * 400}),  # longer than the context window: llama.cpp refuses it
        "{not json",
        json.dumps({"instruction": "Name one hazard.", "input": "underground"}),
    ]
    questions.write_text("\n".join(rows) + "\n", encoding="utf-8")
    model = load_chat_model(tiny_gguf, settings=SHORT, n_ctx=256)
    out = tmp_path / "out" / "results.json"
    report = run_batch(model, questions, out)

    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == report and written["backend"] == "gguf"
    results = written["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["error"] is None for r in results] == [True, False, False, True]
    assert "context window" in results[1]["error"] and results[2]["error"].startswith(f"{questions}:3")
    ok = results[0]
    assert ok["answer"] and ok["tokens"] > 0 and ok["seconds"] > 0 and ok["tokens_per_s"] > 0
    assert ok["reference"] == "gas" and results[3]["question"] == "Name one hazard.\nunderground"
    assert written["failed"] == 2


def test_gguf_streams_what_it_returns(tiny_gguf):
    model = load_chat_model(tiny_gguf, settings=SHORT)
    pieces: list[str] = []
    answer = ask(model, "Hello?", think="show", on_text=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == answer.text


def test_interactive_loop_until_exit(tiny_gguf):
    model = load_chat_model(tiny_gguf, settings=SHORT)
    inputs = iter(["Hello?", "", "/reset", "Again?", "/exit", "never read"])
    out: list[str] = []
    interactive(model, read=lambda prompt: next(inputs), write=out.append)
    text = "".join(out)
    assert text.count("model> ") == 2 and text.count("tok/s]") == 2
    assert next(inputs) == "never read"


def test_hf_base_plus_adapter(tmp_path, tiny_model):
    adapter = make_random_adapter(tiny_model, tmp_path / "adapter")
    greedy = ChatSettings("", SamplingConfig(temperature=0, max_new_tokens=6))
    model = load_chat_model(adapter, settings=greedy)  # base found through adapter_config.json
    assert model.backend == "hf"
    pieces: list[str] = []
    first = ask(model, "Hello?", on_text=pieces.append)
    assert first.tokens > 0 and "".join(pieces) == first.text
    assert ask(model, "Hello?").text == first.text  # greedy is deterministic


def test_cli_answers_a_json_array_and_fails_after_the_rest_when_one_fails(tiny_gguf, tmp_path, cli):
    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps(["Hello?", {"input": "Name one hazard."}, {"question": "What is gas?"}]))
    out = tmp_path / "results.json"
    result = cli("chat", tiny_gguf, "--questions", questions, "-o", out, "-s", "sampling.max_new_tokens=4")
    assert result.code == 0, result.stderr
    assert f"results: {out}" in result.stdout and "3 of 3 questions answered" in result.stdout
    assert [r["answer"] is not None for r in json.loads(out.read_text())["results"]] == [True, True, True]
    questions.write_text(json.dumps(["Hello?", {"x": 1}, "Again?"]))
    failed = cli("chat", tiny_gguf, "--questions", questions, "-o", out, "-s", "sampling.max_new_tokens=4")
    assert failed.code != 0 and "1 question(s) failed" in failed.stderr
    assert [r["error"] is None for r in json.loads(out.read_text())["results"]] == [True, False, True]
