"""What LLaMA-Factory accepts, snapshotted for domainft's static checks (no engine import at check time).

Runs with the engine venv's own python and imports only the engine; `scripts/snapshot_engine_schema.py llamafactory`
runs it and writes known.json beside it.
"""

from __future__ import annotations

import dataclasses
import json
from importlib.metadata import version


def snapshot() -> dict:
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams.parser import _TRAIN_ARGS  # what get_train_args parses for `train`

    keys = {f.name for cls in _TRAIN_ARGS for f in dataclasses.fields(cls) if f.init}
    return {
        "engine": "llamafactory",
        "version": version("llamafactory"),
        "transformers": version("transformers"),
        "config_keys": sorted(keys),
        "templates": sorted(TEMPLATES),
        "template_text": {name: template_text(t) for name, t in sorted(TEMPLATES.items())},
    }


def template_text(template) -> list[str]:
    """The literal text a LLaMA-Factory template writes around turns (user, assistant, system, prefix) and stops
    on: domainft finds the turn markers in it that the model's tokenizer must know."""
    texts = []
    for part in ("format_user", "format_assistant", "format_system", "format_prefix"):
        formatter = getattr(template, part, None)
        for slot in getattr(formatter, "slots", None) or []:
            if isinstance(slot, str) and slot.replace("{{content}}", "").strip():
                texts.append(slot.replace("{{content}}", "\u2026"))
    return [*dict.fromkeys(texts), *template.stop_words]


if __name__ == "__main__":
    print(json.dumps(snapshot(), indent=1))
