"""The Ollama Modelfile: a pure function of the recipe and the GGUF file name."""

from __future__ import annotations

from ..chat_formats import chat_format, ollama_template
from ..errors import RecipeError
from ..recipe import Recipe
from ..templating import header, render_template


def render_modelfile(recipe: Recipe, gguf_name: str) -> str:
    """Modelfile text: FROM the GGUF beside it, TEMPLATE + stop tokens for the chat template, the recipe's
    system prompt and sampling. Without a known format TEMPLATE is left out and Ollama uses the GGUF's own.
    SYSTEM carries the recipe's system prompt either way: with model.system_prompt_in user, the TEMPLATE (and the
    GGUF's deployed chat template) open the first user turn with it, as training did."""
    system = recipe.model.system_prompt
    if '"""' in system:
        # Ollama's parser ends a triple-quoted value at the first """; there is no escape for it.
        raise RecipeError('the system prompt cannot contain """ (it ends a Modelfile value)', where="model.system_prompt")
    dropped = next((c for c in system if not c.isprintable() and c not in "\t\r\n"), None)
    if dropped is not None:
        # Ollama's parser keeps printable characters, spaces and newlines only: others would vanish silently.
        raise RecipeError(f"the system prompt holds U+{ord(dropped):04X}, which Ollama's Modelfile parser drops",
                          where="model.system_prompt")
    fmt = chat_format(recipe.model.chat_template)
    return render_template(
        "ollama/Modelfile.j2",
        header=header(recipe.name, recipe.content_hash()).rstrip("\n"),
        model_name=recipe.name.lower(),
        gguf=gguf_name,
        template=ollama_template(recipe),
        system=system,
        sampling=recipe.sampling,
        stop=list(fmt.stop) if fmt else [],
    )
