"""The Ollama Modelfile: golden files per chat format, and the pieces Ollama reads."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from domainft.errors import RecipeError
from domainft.export import render_modelfile
from domainft.recipe import recipe_from_dict

from ollama_prompt import ollama_prompt

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ollama"


def recipe(**model):
    return recipe_from_dict({
        "name": "t-export",
        "model": {"base": "embedded:smollm2", "chat_template": "smollm2", "system_prompt": "你是煤矿安全专家。", **model},
        "dataset": {"files": ["qa.jsonl"]},
        "sampling": {"temperature": 0.6, "top_p": 0.95, "repetition_penalty": 1.1, "max_new_tokens": 1024},
    })


def _strip_hash(text: str) -> str:
    """The header carries the recipe hash, which moves with every schema default; golden files leave it out."""
    return re.sub(r"sha256 [0-9a-f]{16}", "sha256 <hash>", text)


@pytest.mark.parametrize("chat_template", ["smollm2", "deepseekr1", "llama3"])
def test_golden(chat_template):
    actual = _strip_hash(render_modelfile(recipe(chat_template=chat_template), "t-export-q4_k_m.gguf"))
    golden = GOLDEN / f"Modelfile.{chat_template}"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


def _instructions(text: str) -> list[tuple[str, str]]:
    """Modelfile instructions as Ollama's parser sees them: comments dropped, \"\"\" values kept whole."""
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return re.findall(r'^([A-Z]+) ("""[\s\S]*?"""|.*)$', body, flags=re.MULTILINE)


def test_modelfile_carries_recipe_values():
    text = render_modelfile(recipe(), "t-export-q4_k_m.gguf")
    found = _instructions(text)
    names = [name for name, _ in found]
    assert names[:3] == ["FROM", "TEMPLATE", "SYSTEM"]
    assert ("FROM", "./t-export-q4_k_m.gguf") in found
    assert ("SYSTEM", '"""你是煤矿安全专家。"""') in found
    params = [value for name, value in found if name == "PARAMETER"]
    assert params[:4] == ["temperature 0.6", "top_p 0.95", "repeat_penalty 1.1", "num_predict 1024"]
    assert params[4:] == ['stop "<|im_start|>"', 'stop "<|im_end|>"']
    # As Ollama prompts with it: the SYSTEM in the system turn, the answer turn opened (tests/ollama_prompt.py).
    assert ollama_prompt(text, [{"role": "user", "content": "问"}]) == (
        "<|im_start|>system\n你是煤矿安全专家。<|im_end|>\n<|im_start|>user\n问<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("chat_template", ["smollm2", "deepseekr1", "llama3"])
def test_system_prompt_in_the_user_turn(chat_template):
    """model.system_prompt_in user: SYSTEM still carries the prompt, and the TEMPLATE opens the first user turn with
    it (only the first); the system turn is the template's own default, as in training."""
    text = render_modelfile(recipe(chat_template=chat_template, system_prompt_in="user"), "m.gguf")
    prompt = ollama_prompt(text, [{"role": "user", "content": "问一"}, {"role": "assistant", "content": "答"},
                                  {"role": "user", "content": "问二"}])
    assert prompt.count("你是煤矿安全专家。") == 1
    assert "你是煤矿安全专家。\n\n问一" in prompt and "问二" in prompt
    if chat_template == "smollm2":
        assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_empty_system_prompt_and_unknown_template():
    # No format for this template: no TEMPLATE, no stop tokens; Ollama then uses the GGUF's own chat template.
    text = render_modelfile(recipe(system_prompt="", chat_template="mistral"), "m.gguf")
    names = [name for name, _ in _instructions(text)]
    assert "TEMPLATE" not in names and "SYSTEM" not in names and "FROM" in names
    assert "stop" not in text


def test_triple_quote_in_system_prompt_is_a_recipe_error():
    with pytest.raises(RecipeError) as err:
        render_modelfile(recipe(system_prompt='say """hi"""'), "m.gguf")
    assert err.value.where == "model.system_prompt"
