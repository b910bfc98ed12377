"""Every engine chat template is checked against the model's tokenizer before launch: a template whose turn markers
the tokenizer has neither as special tokens nor in its own chat template is refused, naming the marker and the
templates that fit; one whose markers it has passes. One case per template that writes any marker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from domainft.engines import get_engine
from domainft.engines.checks import check_chat_template, engine_template_text, markers
from domainft.errors import RecipeError

LF_TEXT = get_engine("llamafactory").chat_templates()
LF_WITH_MARKERS = sorted(name for name, texts in LF_TEXT.items() if markers(texts))
AX_TEXT = get_engine("axolotl").chat_templates()


def tokenizer_folder(root: Path, tokens: list[str], chat_template: str = "") -> Path:
    """A model folder whose tokenizer knows exactly `tokens` as added tokens (and the given chat template)."""
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    config = {"added_tokens_decoder": {str(i): {"content": t, "special": True} for i, t in enumerate(tokens)}}
    if chat_template:
        config["chat_template"] = chat_template
    (root / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False))
    return root


def _plan(plan_for, engine: str, template: str, model: Path):
    return plan_for(engine, model={"base": str(model), "chat_template": template})


def test_every_llamafactory_template_with_markup_is_covered():
    assert len(LF_WITH_MARKERS) > 60, LF_WITH_MARKERS  # the snapshot holds every template's text
    assert {"gemma", "phi", "mistral", "glm4", "llama3", "qwen", "deepseekr1", "smollm2"} <= set(LF_WITH_MARKERS)


@pytest.mark.parametrize("template", LF_WITH_MARKERS)
def test_llamafactory_template_needs_its_markers(template, plan_for, tmp_path):
    # The engine's own markers, plus the stop tokens of the family eval, chat and the Modelfile use.
    needed = markers(engine_template_text(_plan(plan_for, "llamafactory", template, tmp_path)))
    assert set(markers(LF_TEXT[template])) <= set(needed)
    bare = tokenizer_folder(tmp_path / "bare", ["<nothing-the-templates-write>"])
    with pytest.raises(RecipeError) as err:
        check_chat_template(_plan(plan_for, "llamafactory", template, bare))
    assert err.value.where == "model.chat_template" and needed[0] in err.value.message
    has = tokenizer_folder(tmp_path / "has", needed)
    check_chat_template(_plan(plan_for, "llamafactory", template, has))
    # Markers the tokenizer writes as plain text are fine when its own chat template uses them (Mistral v0.1).
    own = tokenizer_folder(tmp_path / "own", [], chat_template=" ".join(needed))
    check_chat_template(_plan(plan_for, "llamafactory", template, own))


@pytest.mark.parametrize("template", sorted(AX_TEXT))
def test_axolotl_alpaca_format_needs_its_markers(template, plan_for, tmp_path):
    needed = markers(engine_template_text(_plan(plan_for, "axolotl", template, tmp_path)))
    assert set(markers(AX_TEXT[template])) <= set(needed) and needed, template
    with pytest.raises(RecipeError):
        check_chat_template(_plan(plan_for, "axolotl", template, tokenizer_folder(tmp_path / "bare", ["<nothing-the-templates-write>"])))
    check_chat_template(_plan(plan_for, "axolotl", template, tokenizer_folder(tmp_path / "has", needed)))


@pytest.mark.parametrize("engine", ["llamafactory", "axolotl"])
@pytest.mark.parametrize("template,fits", [("smollm2", True), ("qwen", True), ("gemma", False), ("phi", False),
                                           ("mistral", False), ("glm4", False), ("llama3", False)])
def test_on_smollm2(engine, template, fits, plan_for, smollm2_model, tmp_path):
    """The demo's real tokenizer: its ChatML family fits; gemma, phi, mistral and glm4 are refused with a hint."""
    if engine == "axolotl" and template not in AX_TEXT:
        pytest.skip("Axolotl's alpaca formats refuse this template by name first")
    model = tmp_path / "smollm2"
    shutil.copytree(smollm2_model, model, ignore=shutil.ignore_patterns("*.safetensors"))
    plan = _plan(plan_for, engine, template, model)
    if fits:
        check_chat_template(plan)
        return
    with pytest.raises(RecipeError) as err:
        check_chat_template(plan)
    assert "templates that fit: smollm2" in err.value.one_line() or "smollm2" in err.value.one_line()
