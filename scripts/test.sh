#!/usr/bin/env bash
# The README's test command: install what is missing (fast when cached), then run every test,
# the real end-to-end ones included (real engines, real lm-eval, real llama.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python -m pytest -ra "$@"
