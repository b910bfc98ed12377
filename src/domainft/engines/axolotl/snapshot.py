"""What Axolotl accepts, snapshotted for domainft's static checks (no engine import at check time).

Runs with the engine venv's own python and imports only the engine; `scripts/snapshot_engine_schema.py axolotl`
runs it and writes known.json beside it.
"""

from __future__ import annotations

import importlib
import json
from importlib.metadata import version


def snapshot() -> dict:
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
    out = {}
    for plugin, args in AXOLOTL_PLUGINS.items():
        module, cls = args.split(":")
        fields = getattr(importlib.import_module(module), cls).model_fields
        out[plugin] = sorted(set(fields) | {f.alias for f in fields.values() if f.alias})
    return out


if __name__ == "__main__":
    print(json.dumps(snapshot(), indent=1))
