"""Export end to end: a LoRA adapter on SmolLM2 -> the engine's merge -> llama.cpp's converter -> quantize.

No training: a random adapter stands where training leaves one (train_dir), so the test is about export.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peft_helpers import make_random_adapter

from domainft.chat import ChatSettings, ask, load_chat_model
from domainft.export import run_export
from domainft.manifest import sha256_file
from domainft.plan import make_plan
from domainft.recipe import SamplingConfig, recipe_from_dict

REPO = Path(__file__).resolve().parents[2]
PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
          {"role": "user", "content": "What is the capital of France?"}]
N_TOKENS = 8

pytestmark = pytest.mark.e2e


def _plan(tmp: Path, base: str, engine: str, **export):
    recipe = recipe_from_dict({
        "name": "t-export",
        "engine": engine,
        "model": {"base": base, "chat_template": "smollm2", "system_prompt": "You are a helpful assistant."},
        "dataset": {"files": [str(REPO / "data" / "coal" / "demo_qa.jsonl")]},
        "training": {"precision": "fp32"},
        "export": {"quantizations": ["q4_k_m"], **export},
    })
    return make_plan(recipe, run_dir=tmp / "run")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, smollm2_model):
    plan = _plan(tmp_path_factory.mktemp("export"), "embedded:smollm2", "llamafactory", lora_gguf=True)
    make_random_adapter(smollm2_model, plan.train_dir)
    return plan, run_export(plan, ["q4_k_m", "q8_0"])


def test_export_writes_what_export_json_says(exported):
    plan, result = exported
    record = json.loads((plan.export_dir / "export.json").read_text())
    kinds = {(f["kind"], f["quant"]) for f in record["files"]}
    assert kinds == {("gguf", "f16"), ("gguf", "q4_k_m"), ("gguf", "q8_0"), ("lora-gguf", "f16"), ("modelfile", None)}
    for item in record["files"]:
        path = plan.export_dir / item["path"]
        assert path.stat().st_size == item["bytes"] and sha256_file(path) == item["sha256"]
    assert record["modelfile_from"] == "t-export-q4_k_m.gguf"
    assert "FROM ./t-export-q4_k_m.gguf" in result.modelfile.read_text()
    assert (result.merged_dir / "config.json").exists()
    sizes = {f["quant"]: f["bytes"] for f in record["files"] if f["kind"] == "gguf"}
    assert sizes["q4_k_m"] < sizes["q8_0"] < sizes["f16"]
    assert not list(plan.export_dir.glob(".*"))  # no partial files left behind


def _hf_greedy(model_dir: Path, ids: list[int], adapter: Path | None = None) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=N_TOKENS, do_sample=False, temperature=None,
                             top_p=None, top_k=None)
    return out[0, len(ids):].tolist()


def test_f16_gguf_greedy_tokens_equal_hf(exported, smollm2_model):
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    plan, result = exported
    tokenizer = AutoTokenizer.from_pretrained(str(result.merged_dir))
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    hf_merged = _hf_greedy(result.merged_dir, ids)
    # The engine's merge is the adapter: merged weights answer like base + adapter through PEFT.
    assert _hf_greedy(smollm2_model, ids, adapter=plan.train_dir) == hf_merged

    llm = Llama(model_path=str(result.gguf("f16")), n_ctx=512, verbose=False)
    gguf_ids = []
    for token in llm.generate(ids, temp=0.0, top_k=1, reset=True):
        if len(gguf_ids) == N_TOKENS or token == llm.token_eos():
            break
        gguf_ids.append(token)
    assert gguf_ids == hf_merged[: len(gguf_ids)] and len(gguf_ids) >= 5, (gguf_ids, hf_merged)


def test_q4_k_m_answers_through_chat(exported):
    plan, result = exported
    greedy = ChatSettings("You are a helpful assistant.", SamplingConfig(temperature=0, max_new_tokens=24))
    model = load_chat_model(plan, settings=greedy)  # auto: the exported GGUF the Modelfile points at
    assert model.backend == "gguf" and model.source == str(result.gguf("q4_k_m"))
    answer = ask(model, "What is the capital of France?")
    assert answer.text.strip() and answer.tokens > 0 and answer.seconds > 0


def test_lora_gguf_applies_to_the_base(exported, tmp_path, smollm2_model):
    from llama_cpp import Llama

    from domainft.export.gguf import convert_hf_to_gguf

    plan, _ = exported
    base = convert_hf_to_gguf(smollm2_model, tmp_path / "base-f16.gguf", log_path=tmp_path / "log")
    lora = plan.export_dir / "t-export-lora-f16.gguf"
    llm = Llama(model_path=str(base), lora_path=str(lora), n_ctx=256, verbose=False)
    assert llm.create_completion("The capital of France is", max_tokens=4, temperature=0)["choices"][0]["text"]


def test_axolotl_merge_exports_the_tiny_model(tmp_path, tiny_model):
    plan = _plan(tmp_path, "embedded:tiny-random-llama", "axolotl")
    make_random_adapter(tiny_model, plan.train_dir)
    result = run_export(plan, ["q4_0"])
    assert result.gguf("q4_0").stat().st_size > 0
    assert (result.merged_dir / "config.json").exists() and not (result.merged_dir / "merged").exists()
