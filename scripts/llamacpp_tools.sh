#!/usr/bin/env bash
# Install llama.cpp's Python pieces into a venv:
#   - llama-cpp-python (inference + quantize), built from source: it ships only an sdist;
#   - llama.cpp's HF->GGUF converter (convert_hf_to_gguf, convert_lora_to_gguf, `conversion/`) and the gguf-py
#     that matches it, both built from the same sdist (PyPI's gguf is older than this converter);
#   - llama.cpp's copies of real models' chat templates (`models/templates/*.jinja`, into the cache): the tests
#     check the Axolotl prompt formats for Qwen2.5, Qwen3 and DeepSeek-R1-Distill against them.
# Idempotent: a second run finds the stamp and returns in well under a second.
#
# usage: scripts/llamacpp_tools.sh VENV
# env:   LLAMACPP_WHEELS=DIR   a folder holding an already built llama_cpp_python wheel (tried first)
#        DOMAINFT_HOME         cache root (default ~/.cache/domainft); the converter wheels are kept there
set -euo pipefail

VERSION=0.3.36
VENV=${1:?usage: scripts/llamacpp_tools.sh VENV}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "llamacpp_tools: no python in $VENV/bin" >&2; exit 2; }

CACHE="${DOMAINFT_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/domainft}/llamacpp/$VERSION"
STAMP="$VENV/.domainft-llamacpp-$VERSION"
pip() { "$PY" -m pip --disable-pip-version-check "$@"; }

# find_spec, not import: importing the converter pulls in torch (seconds).
if [ -f "$STAMP" ] && [ -f "$CACHE/templates/.done" ] && "$PY" -c "import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ('llama_cpp', 'convert_hf_to_gguf', 'convert_lora_to_gguf')))"; then
  echo "llama.cpp tools $VERSION: already installed in $VENV"
  exit 0
fi

# 1. llama-cpp-python. pip keeps the wheel it builds in its wheel cache, so only the first build is slow.
if "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
  echo "llama-cpp-python $VERSION: present"
else
  find_links=()
  if [ -n "${LLAMACPP_WHEELS:-}" ] && ls "$LLAMACPP_WHEELS"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    find_links=(--find-links "$LLAMACPP_WHEELS")
  fi
  echo "llama-cpp-python $VERSION: building from source (about 10 min on 2 cores the first time; pip caches the wheel)"
  # A portable build: -march=native would tie the cached wheel to this CPU.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" pip install --progress-bar on "${find_links[@]}" \
    "llama-cpp-python==$VERSION"
fi

# 2. Converter + gguf-py wheels and the chat templates, from the same sdist, once into the cache.
mkdir -p "$CACHE"
src="llama_cpp_python-$VERSION/vendor/llama.cpp"
work=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
sdist() {  # the sdist comes from pip's HTTP cache after step 1; preparing its metadata takes about a minute
  [ -f "$work/llama_cpp_python-$VERSION.tar.gz" ] ||
    pip download --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$VERSION" >&2
  echo "$work/llama_cpp_python-$VERSION.tar.gz"
}
if ! ls "$CACHE"/wheels/gguf-*.whl "$CACHE"/wheels/llama_cpp_scripts-*.whl >/dev/null 2>&1; then
  echo "llama.cpp converter: building wheels from the llama-cpp-python $VERSION sdist"
  # Only the Python side of the 76 MB sdist: top-level scripts, conversion/, gguf-py/.
  tar -xzf "$(sdist)" -C "$work" --wildcards --no-wildcards-match-slash \
    "$src/*.py" "$src/*.toml" "$src/*.md" "$src/LICENSE" "$src/conversion" "$src/gguf-py"
  pip wheel --no-deps -w "$work/wheels" "$work/$src" "$work/$src/gguf-py"
  rm -rf "$CACHE/wheels" && mv "$work/wheels" "$CACHE/wheels"
fi
if [ ! -f "$CACHE/templates/.done" ]; then
  echo "llama.cpp chat templates: from the llama-cpp-python $VERSION sdist"
  tar -xzf "$(sdist)" -C "$work" "$src/models/templates" "$src/LICENSE"
  cp "$work/$src/LICENSE" "$work/$src/models/templates/LICENSE.llama.cpp"
  touch "$work/$src/models/templates/.done"
  rm -rf "$CACHE/templates" && mv "$work/$src/models/templates" "$CACHE/templates"
fi
# --no-deps: the converter's metadata pins transformers==4.57.6, which would downgrade the wrapper; it runs
# with the transformers already here. --force-reinstall: gguf-py carries the same version number as PyPI's gguf.
pip install --no-deps --force-reinstall "$CACHE"/wheels/gguf-*.whl "$CACHE"/wheels/llama_cpp_scripts-*.whl
pip install "sentencepiece>=0.1.98,<0.3" "tqdm>=4.27"

"$PY" -c "import llama_cpp, convert_hf_to_gguf, convert_lora_to_gguf, gguf; print('llama.cpp tools', llama_cpp.__version__, 'ready')"
touch "$STAMP"
