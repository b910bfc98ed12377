"""A real `python -m llama_cpp.server` on 127.0.0.1 serving the embedded SmolLM2 GGUF as the teacher."""

from __future__ import annotations

import json

import pytest
import yaml

from domainft.datagen import load_prompts, run_datagen
from domainft.datagen.prompts import schema_errors
from domainft.resources import folder

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")


@pytest.fixture(scope="module")
def llama_server(smollm2_server):
    """The real llama_cpp.server serving SmolLM2 (tests/conftest.py), as the teacher."""
    return smollm2_server


def tiny_prompts(name: str, tmp_path):
    """A shipped prompt file with tight length caps: a 135M model on two CPU cores must finish in seconds, and it
    cannot be trusted to stay grounded, so grounding is off."""
    data = yaml.safe_load((folder("datagen") / f"{name}.yaml").read_text(encoding="utf-8"))
    data.update(question_max_chars=40, answer_max_chars=60, min_grounding=0.0, max_tokens=400, temperature=0.0)
    prompts = tmp_path / f"{name}-tiny.yaml"
    prompts.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return prompts


@pytest.mark.e2e
def test_llama_cpp_server_teacher_writes_schema_valid_pairs(llama_server, coal_plan, tmp_path):
    prompts = tiny_prompts("coal", tmp_path)
    plan = coal_plan(provider="openai", base_url=llama_server, model="smollm2", prompts=str(prompts),
                     pairs_per_chunk=2, max_chunks=3, concurrency=1, timeout_s=300, max_retries=2)
    summary = run_datagen(plan, progress=False)
    assert summary.done == 3 and summary.failed == 0, summary.failed_chunks
    assert summary.tokens and summary.tokens > 0
    spec = load_prompts(str(prompts))
    pairs = [json.loads(line) for line in (plan.datagen_dir / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert pairs, summary.rejected
    for pair in pairs:
        item = {"question": pair["instruction"], "answer": pair["output"]}
        assert not schema_errors(item, spec.request_schema(2)["properties"]["pairs"]["items"])
        assert pair["source"]["chunk_id"] and pair["source"]["file"]
    print(f"\nllama_cpp.server teacher: {len(pairs)} pairs, {summary.tokens} tokens, {summary.seconds:.1f} s, "
          f"rejected {summary.rejected}")


@pytest.mark.e2e
def test_zhipuai_sdk_teacher_against_the_same_server(llama_server, coal_plan, tmp_path, monkeypatch):
    """The GLM-4 provider drives the real zhipuai SDK (its request shape, JWT auth header, JSON response format)
    against an OpenAI-compatible server, as `datagen.base_url` allows for a GLM proxy; the real GLM service
    needs a key this machine does not have."""
    pytest.importorskip("zhipuai")
    prompts = tiny_prompts("coal", tmp_path)
    monkeypatch.setenv("ZHIPUAI_API_KEY", "domainft-test-id.domainft-test-secret")  # the SDK signs a JWT with it
    plan = coal_plan(provider="zhipuai", base_url=llama_server, model="smollm2", prompts=str(prompts),
                     pairs_per_chunk=2, max_chunks=1, concurrency=1, timeout_s=300, max_retries=1)
    summary = run_datagen(plan, progress=False)
    # Every call went through and came back parsed (tokens counted). GLM-4 honours json_object with the schema
    # given in the prompt; SmolLM2-135M under a generic JSON grammar often rambles past max_tokens, so a reply
    # may be rejected for its content, never for the protocol (auth, status, envelope, connection).
    assert summary.tokens and summary.tokens > 0
    assert all(reason.startswith("reply_") for reason in summary.rejected), summary.rejected
    assert all("invalid_json" in c["reason"] or "schema" in c["reason"] for c in summary.failed_chunks), \
        summary.failed_chunks
    written = "".join(p.read_text(encoding="utf-8", errors="replace") for p in plan.datagen_dir.rglob("*") if p.is_file())
    assert "domainft-test-secret" not in written


@pytest.mark.e2e
def test_coalqa_prompt_as_it_is_a_bare_list_of_input_output(llama_server, coal_plan, tmp_path):
    """CoalQA's own prompt asks for [{"input": ..., "output": ...}]: the prompt file declares that shape and a real
    llama_cpp.server, constrained by the bare-list schema, answers in it; pairs per document, not per chunk."""
    prompts = tiny_prompts("coalqa", tmp_path)
    plan = coal_plan(provider="openai", base_url=llama_server, model="smollm2", prompts=str(prompts),
                     pairs_per_document=2, max_chunks=2, concurrency=1, timeout_s=300, max_retries=2)
    summary = run_datagen(plan, progress=False)
    assert summary.done == 2 and summary.failed == 0, summary.failed_chunks
    pairs = [json.loads(line) for line in (plan.datagen_dir / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert pairs, summary.rejected
    spec = load_prompts(str(prompts))
    assert spec.request_schema(2)["type"] == "array"
    for pair in pairs:
        assert not schema_errors({"input": pair["instruction"], "output": pair["output"]}, spec.item_schema)
    print(f"\nCoalQA prompt via llama_cpp.server: {len(pairs)} pairs, rejected {summary.rejected}")
