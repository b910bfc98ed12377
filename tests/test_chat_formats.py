"""Where the system prompt goes and the chat template deployed with a trained model (chat_formats.py); that every
deployment then prompts as the engine trained is tests/test_same_prompt.py's (e2e)."""

from __future__ import annotations

import json
import shutil

from domainft.chat_formats import (
    DEPLOYED_MARK,
    EMPTY_THINK,
    deploy_chat_template,
    fold_system,
    system_turn,
)
from domainft.recipe import recipe_from_dict


def recipe(**model):
    return recipe_from_dict({"name": "t", "dataset": {"files": ["x.jsonl"]}, "model": model})


def test_fold_system_opens_the_first_user_turn_only():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "A"}, {"role": "user", "content": "Q2"}]
    assert fold_system(messages) == [{"role": "user", "content": "S\n\nQ1"}, messages[2], messages[3]]
    assert fold_system(messages[1:]) == messages[1:]


def test_system_turn_is_named_for_every_engine():
    assert system_turn(recipe(system_prompt="S")) == "S"
    assert system_turn(recipe(system_prompt="S", system_prompt_in="user")).startswith("You are a helpful AI assistant")
    assert system_turn(recipe(chat_template="deepseekr1")) == ""
    assert system_turn(recipe(chat_template="llama3")) is None  # not spelt out: the engine's own default


def test_deployed_chat_template(tmp_path, tiny_model):
    """The model's own template stays where it already prompts as training does; deepseekr1 gets the trained prompt
    (the empty think block), user mode the fold; deploying twice or switching modes never stacks preludes, and
    tokenizer_config.json's copy stays in step."""
    folder = tmp_path / "adapter"
    shutil.copytree(tiny_model, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    own = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    assert not deploy_chat_template(recipe(system_prompt="S"), folder)
    assert deploy_chat_template(recipe(system_prompt="S", system_prompt_in="user"), folder)
    folded = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    assert folded.startswith(DEPLOYED_MARK) and folded.endswith(own)
    assert not deploy_chat_template(recipe(system_prompt="S", system_prompt_in="user"), folder)
    assert deploy_chat_template(recipe(system_prompt="S"), folder)  # back to system mode: the model's own again
    assert (folder / "chat_template.jinja").read_text(encoding="utf-8") == own

    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": own}), encoding="utf-8")
    assert deploy_chat_template(recipe(chat_template="deepseekr1"), folder)
    deployed = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    assert json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"] == deployed
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[[{"role": "user", "content": "Q"}]], chat_template=deployed,
                                        add_generation_prompt=True, bos_token="<B>", eos_token="<E>")
    assert rendered[0] == "<B><｜User｜>Q<｜Assistant｜>" + EMPTY_THINK
    assert not deploy_chat_template(recipe(system_prompt="S"), tmp_path)  # no tokenizer there: nothing written


def test_deepseek3_keeps_its_own_template(tmp_path, tiny_model):
    """The deepseekr1 family's deployed template is for the reasoning name only: deepseek3 trains no think block."""
    folder = tmp_path / "adapter"
    shutil.copytree(tiny_model, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    assert not deploy_chat_template(recipe(chat_template="deepseek3"), folder)
