"""What a loaded chat model is: settings from the recipe, the backend interface, an answer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..chat_formats import fold_system
from ..errors import UserError
from ..plan import Plan
from ..recipe import SamplingConfig

Backend = Literal["auto", "gguf", "hf"]
Think = Literal["show", "hide"]


@dataclass(frozen=True)
class ChatSettings:
    """What the recipe says about talking: system prompt, sampling, whether answers open with a think block."""

    system_prompt: str = ""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    thinking: bool = False
    system_prompt_in: str = "system"  # "user": the system prompt opens the first user turn (as training had it)

    @classmethod
    def from_overrides(cls, overrides: list[str]) -> ChatSettings:
        """Settings for a bare .gguf or model folder from `-s` overrides: sampling.* and model.system_prompt /
        model.enable_thinking, validated as in a recipe (the rest of a recipe means nothing without one)."""
        from ..recipe import recipe_from_dict
        from ..recipe_file import apply_override

        data: dict[str, Any] = {"name": "chat", "dataset": {"files": ["none.jsonl"]}}
        for item in overrides:
            key = item.partition("=")[0]
            if not key.startswith(("sampling.", "model.system_prompt", "model.enable_thinking")):
                raise UserError(f"'{key}' means nothing without a recipe", where="-s",
                                hint="with a model file, -s takes sampling.*, model.system_prompt(_in) and "
                                     "model.enable_thinking")
            apply_override(data, item)
        recipe = recipe_from_dict(data)
        return cls(recipe.model.system_prompt, recipe.sampling, recipe.model.enable_thinking,
                   recipe.model.system_prompt_in)

    @classmethod
    def from_plan(cls, plan: Plan) -> ChatSettings:
        # The deployed chat template closes an R1 model's think block in the prompt unless thinking is on
        # (chat_formats.empty_think): an answer opens with a think block only then.
        model = plan.recipe.model
        return cls(model.system_prompt, plan.recipe.sampling, model.enable_thinking, model.system_prompt_in)


@dataclass(frozen=True)
class Answer:
    text: str  # the answer; with think="hide" the <think> block is removed
    seconds: float
    tokens: int  # generated tokens
    thinking: str | None = None  # the <think> block's content, when there was one
    sources: tuple[str, ...] = ()  # with --rag: the passages put before the question, "[n] file › section"

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class ChatModel:
    """A loaded model. `stream(messages)` yields text pieces; `count_tokens` measures the answer."""

    backend: str
    source: str
    settings: ChatSettings

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def messages(self, question: str, history: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
        """The conversation as the model was trained on it: the system prompt as a system message, or opening the
        first user turn (system_prompt_in user; the deployed chat template would move it there too)."""
        system = [{"role": "system", "content": self.settings.system_prompt}] if self.settings.system_prompt else []
        messages = [*system, *(history or []), {"role": "user", "content": question}]
        return fold_system(messages) if self.settings.system_prompt_in == "user" else messages
