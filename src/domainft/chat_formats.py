"""Chat-template families as data (templates/ollama/chat_formats.yaml): the Ollama TEMPLATE and the special
tokens each family writes. Export renders Modelfiles from it; the engine checks use the tokens to catch a
chat template that does not match the model's tokenizer. Also each template's turns as format strings
(templates/axolotl/alpaca_formats.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import yaml

from .resources import folder

FORMATS_FILE = "ollama/chat_formats.yaml"


@dataclass(frozen=True)
class ChatFormat:
    """How Ollama prompts a chat-template family: a Go TEMPLATE and the stop tokens."""

    name: str
    template: str
    stop: tuple[str, ...]


@cache
def _formats() -> dict[str, ChatFormat]:
    data = yaml.safe_load((folder("templates") / FORMATS_FILE).read_text(encoding="utf-8"))
    by_name: dict[str, ChatFormat] = {}
    for fmt_name, spec in data.items():
        fmt = ChatFormat(fmt_name, spec["template"], tuple(spec["stop"]))
        for name in spec["names"]:
            by_name[name] = fmt
    return by_name


def chat_format(chat_template: str) -> ChatFormat | None:
    """The Ollama format for an engine chat-template name, or None when templates/ollama has none."""
    return _formats().get(chat_template)


def family_names() -> list[str]:
    """Every chat-template name with a known format, in file order."""
    return list(_formats())


@cache
def alpaca_formats() -> dict[str, dict[str, str]]:
    """Each chat template spelt out as format strings over one instruction/answer turn
    (templates/axolotl/alpaca_formats.yaml): how Axolotl writes alpaca data, and how domainft counts the tokens
    an example takes in any engine."""
    return yaml.safe_load((folder("templates") / "axolotl" / "alpaca_formats.yaml").read_text(encoding="utf-8"))
