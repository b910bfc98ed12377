"""Refresh an engine's snapshot of what it accepts: runs `engines/<name>/snapshot.py` with the engine venv's
python (it imports only the engine) and writes `engines/<name>/known.json`.

    python scripts/snapshot_engine_schema.py llamafactory      (the venv is built first when missing)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from domainft.engines import NAMES
from domainft.engines.venv import ENGINES_DIR, ensure_engine

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in NAMES:
        sys.exit(f"usage: snapshot_engine_schema.py {'|'.join(NAMES)}")
    folder = ENGINES_DIR / name
    python = ensure_engine(name) / "bin" / "python"
    text = subprocess.run([str(python), str(folder / "snapshot.py")], check=True, capture_output=True, text=True).stdout
    json.loads(text)  # a snapshot that does not parse never replaces a good one
    Path(folder / "known.json").write_text(text, encoding="utf-8")
    print(f"wrote {folder / 'known.json'}")
