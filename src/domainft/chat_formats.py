"""Chat-template families as data (templates/ollama/chat_formats.yaml): the Ollama TEMPLATE, the special tokens each
family writes, and the HF chat template deployed with a trained model. Export renders Modelfiles from it; the engine
checks use the tokens to catch a chat template that does not match the model's tokenizer. Also each template's turns
as format strings (templates/_shared/alpaca_formats.yaml), with the system turn it writes when given none.

One prompt everywhere: what the engine trains on is what every deployment prompts with. Where the recipe puts its
system prompt (`model.system_prompt_in`) and whether the answer turn opens with an empty think block are decided
here, once, for the training data (engines/folder.py), the Modelfile, and the chat template saved beside the adapter
and in the merged weights (so in the GGUF, `domainft chat` and lm-eval)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .fsutil import atomic_write
from .resources import folder

if TYPE_CHECKING:
    from .recipe import Recipe

FORMATS_FILE = "ollama/chat_formats.yaml"
# model.system_prompt_in user: the system prompt, this, then the user's own text, in the first user turn.
USER_TURN_JOIN = "\n\n"
# What a reasoning template (LLaMA-Factory's deepseekr1, qwen3) opens the answer turn with when thinking is off.
EMPTY_THINK = "<think>\n\n</think>\n\n"
SYSTEM_IN_USER_JINJA = "chat/system_in_user.jinja"
# Opens (and closes) what domainft puts in front of a saved chat template, so a second deployment replaces it.
DEPLOYED_MARK, DEPLOYED_END = "{#- domainft: deployed prompt -#}", "{#- domainft: end -#}"


@dataclass(frozen=True)
class ChatFormat:
    """How Ollama prompts a chat-template family: a Go TEMPLATE and the stop tokens; `jinja`, name -> the HF chat
    template deployed for that name (under templates/; others keep the model's own); `reasoning`, its names that
    train an empty think block."""

    name: str
    template: str
    stop: tuple[str, ...]
    reasoning: tuple[str, ...] = ()
    jinja: tuple[tuple[str, str], ...] = ()


@cache
def _data() -> dict[str, Any]:
    return yaml.safe_load((folder("templates") / FORMATS_FILE).read_text(encoding="utf-8"))


@cache
def _formats() -> dict[str, ChatFormat]:
    by_name: dict[str, ChatFormat] = {}
    for fmt_name, spec in _data().items():
        if fmt_name.startswith("_"):
            continue
        fmt = ChatFormat(fmt_name, spec["template"], tuple(spec["stop"]), tuple(spec.get("reasoning", ())),
                         tuple((spec.get("jinja") or {}).items()))
        for name in spec["names"]:
            by_name[name] = fmt
    return by_name


def chat_format(chat_template: str) -> ChatFormat | None:
    """The Ollama format for an engine chat-template name, or None when templates/ollama has none."""
    return _formats().get(chat_template)


def family_names() -> list[str]:
    """Every chat-template name with a known format, in file order."""
    return list(_formats())


def alpaca_formats_path() -> Path:
    """templates/_shared/alpaca_formats.yaml: read for every engine (the system turn each writes, the token counts),
    so it sits with the shared templates, not with one engine's."""
    return folder("templates") / "_shared" / "alpaca_formats.yaml"


@cache
def alpaca_formats() -> dict[str, dict[str, str]]:
    """Each chat template spelt out as format strings over one instruction/answer turn
    (templates/_shared/alpaca_formats.yaml): how Axolotl writes alpaca data, and how domainft counts the tokens
    an example takes in any engine."""
    return yaml.safe_load(alpaca_formats_path().read_text(encoding="utf-8"))


# ---------------------------------------------------------------- where the system prompt goes


def user_turn(instructions: str, content: str) -> str:
    """The first user turn when the system prompt goes into it (model.system_prompt_in user)."""
    return f"{instructions}{USER_TURN_JOIN}{content}" if instructions else content


def system_turn(recipe: Recipe) -> str | None:
    """What the engines write as the system turn: the recipe's system prompt (system_prompt_in system), else the
    chat template's own default (alpaca_formats' default_system: "" for none), named explicitly so every engine
    writes the same; None when the template is not spelt out there (the engine's own default)."""
    model = recipe.model
    if model.system_prompt and model.system_prompt_in == "system":
        return model.system_prompt
    fmt = alpaca_formats().get(model.chat_template)
    return fmt["default_system"] if fmt else None


def instructions(recipe: Recipe) -> str:
    """The text the first user turn opens with (system_prompt_in user), "" for none."""
    return recipe.model.system_prompt if recipe.model.system_prompt_in == "user" else ""


def fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """A leading system message moved to the start of the first user turn (system_prompt_in user), as
    templates/chat/system_in_user.jinja does in the deployed chat template."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    text, out = messages[0]["content"], []
    for message in messages[1:]:
        if message["role"] == "user" and text:
            message, text = {**message, "content": user_turn(text, message["content"])}, ""
        out.append(message)
    return out


def empty_think(recipe: Recipe) -> str:
    """What the answer turn opens with: the empty think block for a reasoning template with thinking off."""
    fmt = chat_format(recipe.model.chat_template)
    reasoning = fmt is not None and recipe.model.chat_template in fmt.reasoning
    return EMPTY_THINK if reasoning and not recipe.model.enable_thinking else ""


# ---------------------------------------------------------------- Ollama


def go_string(value: str) -> str:
    """A Go string literal (JSON's escapes are Go's; non-ASCII stays UTF-8, which Go reads)."""
    return json.dumps(value, ensure_ascii=False)


def ollama_template(recipe: Recipe) -> str | None:
    """The Modelfile TEMPLATE for the recipe: its variables, the preamble, the family's turns; None for a chat
    template without a format (Ollama then uses the GGUF's own)."""
    name = recipe.model.chat_template
    fmt = chat_format(name)
    if fmt is None:
        return None
    default = (alpaca_formats().get(name) or {}).get("default_system", "")
    variables = {"default_system": default, "system_in_user": recipe.model.system_prompt_in == "user",
                 "join": USER_TURN_JOIN, "empty_think": empty_think(recipe)}
    head = "".join(f"{{{{- ${key} := {go_string(value) if isinstance(value, str) else str(value).lower()} }}}}"
                   for key, value in variables.items())
    return head + "\n" + _data()["_preamble"] + "\n" + fmt.template


# ---------------------------------------------------------------- the chat template deployed with the model


def deployed_chat_template(recipe: Recipe, saved: str | None) -> str | None:
    """The chat template to save with the trained model, given the one the engine saved (the model's own, usually):
    the family's own (`jinja`) where the model's does not prompt as training does, behind what the recipe bakes in
    (enable_thinking for reasoning templates, the system prompt folded into the first user turn). None when the
    saved one already is that, or there is nothing to start from."""
    name = recipe.model.chat_template
    fmt = chat_format(name)
    own = dict(fmt.jinja).get(name) if fmt else None
    base = (folder("templates") / own).read_text(encoding="utf-8") if own else _undeployed(saved)
    if base is None:
        return None
    bake = []
    if fmt is not None and name in fmt.reasoning:
        bake.append(f"{{%- set enable_thinking = {str(recipe.model.enable_thinking).lower()} %}}")
    if recipe.model.system_prompt_in == "user":
        bake.append(f"{{%- set domainft_join = {json.dumps(USER_TURN_JOIN)} %}}")
        bake.append((folder("templates") / SYSTEM_IN_USER_JINJA).read_text(encoding="utf-8").strip("\n"))
    deployed = "\n".join([DEPLOYED_MARK, *bake, DEPLOYED_END, base]) if bake else base
    return None if deployed == saved else deployed


def _undeployed(saved: str | None) -> str | None:
    if saved is not None and saved.startswith(DEPLOYED_MARK) and DEPLOYED_END in saved:
        return saved.split(DEPLOYED_END, 1)[1].lstrip("\n")
    return saved


def deploy_chat_template(recipe: Recipe, tokenizer_dir: Path) -> bool:
    """Write the deployed chat template into a saved tokenizer (chat_template.jinja, and tokenizer_config.json's
    `chat_template` where it has one): what transformers, lm-eval and the GGUF converter read. False when the
    folder holds no tokenizer or nothing changes."""
    tokenizer_dir = Path(tokenizer_dir)
    config_path, jinja_path = tokenizer_dir / "tokenizer_config.json", tokenizer_dir / "chat_template.jinja"
    if not config_path.is_file():
        return False
    config = json.loads(config_path.read_text(encoding="utf-8"))
    in_config = isinstance(config.get("chat_template"), str)
    saved = jinja_path.read_text(encoding="utf-8") if jinja_path.is_file() else config.get("chat_template")
    deployed = deployed_chat_template(recipe, saved if isinstance(saved, str) else None)
    if deployed is None:
        return False
    if jinja_path.is_file() or not in_config:
        atomic_write(jinja_path, deployed)
    if in_config:
        config["chat_template"] = deployed
        atomic_write(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return True
