"""Axolotl's alpaca prompt formats must produce exactly the model tokenizer's own chat template text."""

from __future__ import annotations

import pytest

from domainft.engines.axolotl import alpaca_formats

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
