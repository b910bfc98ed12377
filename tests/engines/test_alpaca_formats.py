"""Axolotl's alpaca prompt formats must produce exactly the model tokenizer's own chat template text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from domainft.chat_formats import alpaca_formats
from domainft.resources import home

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from domainft.models.embedded import materialize

    return transformers.AutoTokenizer.from_pretrained(materialize("embedded:tiny-random-llama"))


def _axolotl_text(fmt: dict, system: str, instruction: str, inp: str, output: str) -> str:
    # What axolotl's SystemDataPrompter builds, then the EOS it appends (the tokenizer's eos).
    sys_part = fmt["system_format"].format(system=system) if system else ""
    turn = fmt["format"].format(instruction=instruction, input=inp) if inp else fmt["no_input_format"].format(
        instruction=instruction)
    return sys_part + turn + output


@pytest.mark.parametrize("system", ["", "You answer coal-mine safety questions."])
@pytest.mark.parametrize("inp", ["", "第一条"])
def test_smollm2_format_matches_tokenizer_template(smollm2_tokenizer, system, inp):
    fmt = alpaca_formats()["smollm2"]
    instruction, output = "《矿山安全法》的立法目的是什么？", "为了保障矿山生产安全。"
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": f"{instruction}\n{inp}" if inp else instruction},
        {"role": "assistant", "content": output},
    ]
    expected = smollm2_tokenizer.apply_chat_template(messages, tokenize=False)
    text = _axolotl_text(fmt, system or fmt["default_system"], instruction, inp, output)
    assert expected == text + smollm2_tokenizer.eos_token + "\n"  # the template ends the turn with "<|im_end|>\n"
    prompt = smollm2_tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    assert prompt == text[: -len(output)]  # inference prompt == the training prefix


# ---- Qwen2.5, Qwen3 and DeepSeek-R1-Distill: against the models' real chat templates, as llama.cpp keeps them
# (models/templates in the llama-cpp-python sdist; scripts/llamacpp_tools.sh puts them in the cache), rendered
# by transformers' own chat-template renderer with each model's BOS and EOS.

REPO = Path(__file__).resolve().parents[2]
LLAMACPP_VERSION = re.search(r"^VERSION=(\S+)$", (REPO / "scripts" / "llamacpp_tools.sh").read_text(), re.MULTILINE).group(1)
# format -> (template file, bos the tokenizer adds, eos Axolotl appends, template variables)
REAL_TEMPLATES = {
    "qwen": ("Qwen-Qwen2.5-7B-Instruct.jinja", "", "<|im_end|>", {}),
    "qwen3": ("Qwen-Qwen3-0.6B.jinja", "", "<|im_end|>", {"enable_thinking": False}),
    # llama.cpp's copy adds an enable_thinking switch the original lacks; true renders as the original does.
    "deepseekr1": ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "<｜begin▁of▁sentence｜>",
                   "<｜end▁of▁sentence｜>", {"enable_thinking": True}),
}
EMPTY_THINK = "<think>\n\n</think>\n\n"


def _real_template(name: str) -> str:
    path = home() / "llamacpp" / LLAMACPP_VERSION / "templates" / name
    if not path.exists():
        pytest.skip(f"{path} missing: scripts/llamacpp_tools.sh extracts llama.cpp's templates")
    return path.read_text(encoding="utf-8")


def _render(template: str, messages: list[dict], bos: str, eos: str, variables: dict, prompt: bool) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template, add_generation_prompt=prompt,
                                        bos_token=bos, eos_token=eos, **variables)
    return rendered[0]


@pytest.mark.parametrize("system", ["", "You answer ISO Directives questions."])
@pytest.mark.parametrize("inp", ["", "Clause 7.2"])
@pytest.mark.parametrize("name", sorted(REAL_TEMPLATES))
def test_format_matches_the_models_real_template(name, system, inp):
    file, bos, eos, variables = REAL_TEMPLATES[name]
    template = _real_template(file)
    fmt = alpaca_formats()[name]
    instruction, output = "What does 'shall' express?", "A requirement."
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": f"{instruction}\n{inp}" if inp else instruction},
        {"role": "assistant", "content": output},
    ]
    text = bos + _axolotl_text(fmt, system or fmt["default_system"], instruction, inp, output) + eos
    # What inference feeds the model (apply_chat_template, a GGUF's embedded template) starts the training text.
    prompt = _render(template, messages[:-1], bos, eos, variables, prompt=True)
    assert text.startswith(prompt), (prompt, text)
    full = _render(template, messages, bos, eos, variables, prompt=False)
    if name == "deepseekr1":
        # The template strips thinking from assistant turns; we train the empty think block LLaMA-Factory's
        # deepseekr1 template (enable_thinking false) trains, so that is the only difference.
        assert text.replace("<｜Assistant｜>" + EMPTY_THINK, "<｜Assistant｜>") == full
    else:
        assert text + "\n" == full  # the template ends each turn with "<|im_end|>\n"
