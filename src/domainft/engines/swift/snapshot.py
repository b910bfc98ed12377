"""What ms-swift accepts, snapshotted for domainft's static checks (no engine import at check time).

Runs with the engine venv's own python and imports only the engine; `scripts/snapshot_engine_schema.py swift`
runs it and writes known.json beside it.
"""

from __future__ import annotations

import dataclasses
import json
from importlib.metadata import version


def _text(parts) -> str:
    out = []
    for part in parts or []:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, (list, tuple)):  # token-id lists like [['bos_token_id']]
            out.append(json.dumps(part))
    return "".join(out)


def snapshot() -> dict:
    from swift.arguments import SftArguments
    from swift.model import MODEL_MAPPING
    from swift.template import TEMPLATE_MAPPING

    texts = {}
    for name, meta in sorted(TEMPLATE_MAPPING.items()):
        parts = (_text(getattr(meta, a, None)) for a in ("prefix", "system_prefix", "prompt", "chat_sep", "suffix"))
        texts[name] = [t for t in parts if t.strip()]
    return {
        "engine": "ms-swift",
        "version": version("ms-swift"),
        "transformers": version("transformers"),
        "config_keys": sorted(f.name for f in dataclasses.fields(SftArguments) if f.init),
        "templates": sorted(TEMPLATE_MAPPING),
        "model_types": sorted(MODEL_MAPPING),
        "template_text": texts,
    }


if __name__ == "__main__":
    print(json.dumps(snapshot(), indent=1))
