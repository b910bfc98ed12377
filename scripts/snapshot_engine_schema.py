"""Snapshot what an engine accepts, for domainft's static checks (no engine import at check time).

Run with the engine venv's own python, from the repo root:
    VENV/bin/python scripts/snapshot_engine_schema.py llamafactory > src/domainft/engines/known/llamafactory.json
    VENV/bin/python scripts/snapshot_engine_schema.py axolotl > src/domainft/engines/known/axolotl.json
(`python -m domainft.engines.validate snapshot` is not used: this file must import only the engine.)
"""

from __future__ import annotations

import dataclasses
import json
import sys
from importlib.metadata import version


def llamafactory() -> dict:
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


def axolotl() -> dict:
    from axolotl.utils.schemas.config import AxolotlInputConfig
    from axolotl.utils.schemas.enums import ChatTemplate

    fields = AxolotlInputConfig.model_fields
    keys = set(fields) | {f.alias for f in fields.values() if f.alias}
    return {
        "engine": "axolotl",
        "version": version("axolotl"),
        "transformers": version("transformers"),
        "config_keys": sorted(keys),
        "chat_templates": sorted(t.value for t in ChatTemplate),
        "plugin_keys": axolotl_plugin_keys(),
    }


# Plugins domainft renders (training.liger_kernel): their options are valid only with the plugin in `plugins`.
AXOLOTL_PLUGINS = {"axolotl.integrations.liger.LigerPlugin": "axolotl.integrations.liger.args:LigerArgs"}


def axolotl_plugin_keys() -> dict[str, list[str]]:
    import importlib

    out = {}
    for plugin, args in AXOLOTL_PLUGINS.items():
        module, cls = args.split(":")
        fields = getattr(importlib.import_module(module), cls).model_fields
        out[plugin] = sorted(set(fields) | {f.alias for f in fields.values() if f.alias})
    return out


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in ("llamafactory", "axolotl"):
        sys.exit("usage: snapshot_engine_schema.py llamafactory|axolotl")
    print(json.dumps({"llamafactory": llamafactory, "axolotl": axolotl}[name](), indent=1))
