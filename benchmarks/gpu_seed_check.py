"""The path issue 25 describes, on a GPU machine without internet: a seed recipe names its base model by hub id,
`domainft train` pulls it (the real huggingface_hub client against a local hub on 127.0.0.1 that speaks the Hub's
URL scheme, tests/local_hub.py), pins it, and LLaMA-Factory trains from the local snapshot on the GPU, offline.

The model under the seed's id has the published DeepSeek-R1-Distill-Qwen-1.5B shape with random weights (speed and
memory depend on shapes, not weights) and SmolLM2's tokenizer, whose chat template carries the DeepSeek-R1 turn
markers (as tests/models/test_readme_gpu.py does). Prints: pull and train wall times as typed, the commit the run
is pinned to, steps, peak GPU memory (nvidia-smi, polled) against `domainft validate`'s estimate, and whether any
engine child saw the hub's address.

  python benchmarks/gpu_seed_check.py --venv .cache/gpu-venv --tokenizer .cache/gpu-wheels/tokenizer \
      --work .cache/seed-check [--wrapper-site DIR] [--steps 20] [--out FILE.md]

Run on the GPU machine with `benchmarks/gpu_wheels.sh install` done (the LLaMA-Factory venv) and the wrapper's
huggingface_hub on PYTHONPATH; see BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests"), str(REPO / "benchmarks")]

SEED_ID = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
RECIPE = REPO / "recipes" / "coal-r1-qwen1.5b.yaml"


def gpu_used_mib() -> float:
    if not shutil.which("nvidia-smi"):
        return 0.0
    out = subprocess.run(["nvidia-smi", "-i", "0", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=False)
    return float(out.stdout.split()[0]) if out.returncode == 0 and out.stdout.strip() else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", required=True, help="a venv with LLaMA-Factory (benchmarks/gpu_wheels.sh install)")
    p.add_argument("--tokenizer", required=True, help="SmolLM2's tokenizer files")
    p.add_argument("--work", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out")
    p.add_argument("--wrapper-site", help="a folder on domainft's PYTHONPATH only (e.g. the wrapper's huggingface_hub "
                   "where the machine's is older); the engine's own stack stays as it is")
    p.add_argument("--smoke", action="store_true", help="CPU: a tiny model of the same architecture, fp32")
    args = p.parse_args()
    work = Path(args.work).resolve()
    home = work / "home"
    os.environ["DOMAINFT_HOME"] = str(home)

    from local_hub import LocalHub
    from train_throughput import build_model

    from domainft.chat_formats import chat_format
    from domainft.engines import get_engine
    from domainft.engines.venv import READY, lock_hash, venv_dir

    # The engine venv domainft looks for: the GPU venv, marked ready for the LLaMA-Factory lock.
    target = venv_dir("llamafactory")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(Path(args.venv).resolve())
    (target / READY).write_text(lock_hash("llamafactory"))

    started = time.perf_counter()
    shape, device = ("tiny-qwen2", "cpu") if args.smoke else ("r1-1.5b", "cuda")
    model = build_model(shape, work / f"{shape}-random", Path(args.tokenizer), device)
    build_s = time.perf_counter() - started
    template = " ".join([*get_engine("llamafactory").chat_templates()["deepseekr1"], *chat_format("deepseekr1").stop])
    tok_config = json.loads((model / "tokenizer_config.json").read_text()) | {"chat_template": template}
    hub = LocalHub().start()
    hub.add_repo(SEED_ID, model, files={"tokenizer_config.json": json.dumps(tok_config).encode()})
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_seedcheck_0123456789",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *([args.wrapper_site] if args.wrapper_site else [])])}

    def domainft(*argv: str) -> tuple[subprocess.CompletedProcess, float]:
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "domainft.cli", *argv], cwd=work, env=env, capture_output=True,
                              text=True)
        return done, time.perf_counter() - t

    sets = ["-s", "datagen=null", "-s", "extract.inputs=[]", "-s", f"dataset.files=[{REPO / 'data/coal/demo_qa.jsonl'}]",
            "-s", f"training.max_steps={args.steps}", "-s", "training.logging_steps=1", "-s", f"run_dir={work / 'run'}",
            *(["-s", "training.precision=fp32"] if args.smoke else [])]
    pulled, pull_s = domainft("models", "pull", str(RECIPE), *sets)
    print(pulled.stdout[-1500:], pulled.stderr[-1500:], flush=True)
    valid, _ = domainft("validate", str(RECIPE), *sets)
    print(valid.stdout, valid.stderr, flush=True)

    base, peak = gpu_used_mib(), [0.0]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], gpu_used_mib() - base)
            stop.wait(0.2)

    threading.Thread(target=poll, daemon=True).start()
    trained, train_s = domainft("train", str(RECIPE), *sets)
    stop.set()
    print(trained.stdout[-3000:], trained.stderr[-3000:], flush=True)
    manifest = json.loads((work / "run" / "manifest.json").read_text()) if (work / "run" / "manifest.json").exists() else {}
    log = "\n".join(p.read_text(errors="replace") for p in (work / "run").rglob("*.log"))
    leaked = hub.url in log or "hf_seedcheck" in log or any(
        "hf_seedcheck" in p.read_text(errors="replace") for p in (work / "run").rglob("*") if p.is_file()
        and p.stat().st_size < 5_000_000 and p.suffix in {".json", ".yaml", ".log", ".md", ".txt", ".jsonl"})
    estimate = next((ln for ln in valid.stderr.splitlines() if "GPU" in ln), "")
    rows = [
        (f"random {shape}-shaped model built and saved", f"{build_s:.0f} s"),
        ("`domainft models pull` (local hub, loopback)", f"{pull_s:.1f} s, exit {pulled.returncode}"),
        ("file requests the hub saw (pull and train together)", f"{len(hub.file_requests())}"),
        ("`domainft train` wall time as typed", f"{train_s:.0f} s, exit {trained.returncode}, {args.steps} steps"),
        ("pinned commit in manifest.json", json.dumps(manifest.get("model", manifest.get("stages", {}).get("model", {}).get("params", {})))[:200]),
        ("peak GPU memory during train (nvidia-smi)", f"{peak[0] / 1024:.2f} GiB"),
        ("validate's note", estimate.strip()),
        ("hub address in an engine log, or the token in any run file", "yes" if leaked else "no"),
    ]
    table = "| what | measured |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    hub.stop()


if __name__ == "__main__":
    main()
