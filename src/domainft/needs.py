"""What a recipe needs of the machine, said before a long run: a CUDA GPU, GPU memory, free disk.

`domainft validate` prints these as notes (exit 0: a recipe is often checked on a laptop before it is copied to a
GPU machine); `train` and `run` refuse bf16/fp16 training without a GPU before any pull or datagen starts, instead
of 9 s into the engine. Fast and offline: no torch import (the GPU is found through /proc/driver/nvidia and
nvidia-smi, which only runs where an NVIDIA driver is loaded), sizes come from the pulled snapshot, a local folder
or the model's published shape, and the memory arithmetic is `models/memory.py`'s. All of it is estimates.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EngineError

if TYPE_CHECKING:
    from .plan import Plan

GB = 1e9
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float | None


def cuda_gpus() -> list[Gpu]:
    """The NVIDIA GPUs this process may use. /proc/driver/nvidia lists them when the driver is loaded (a stat on a
    machine without one); nvidia-smi then gives names and memory."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return []
    proc = Path("/proc/driver/nvidia/gpus")
    if not proc.is_dir():
        return []
    from . import process

    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = process.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                               env=dict(os.environ), log_path=None, timeout=10)
        except OSError:
            done = None
        if done is not None and done.returncode == 0:
            gpus = []
            for line in done.tail:
                name, _, mib = line.rpartition(",")
                if name.strip():
                    gpus.append(Gpu(name.strip(), float(mib) / 1024 if mib.strip().isdigit() else None))
            if gpus:
                return gpus
    names = []
    for info in sorted(proc.glob("*/information")):
        model = next((ln.split(":", 1)[1].strip() for ln in info.read_text(errors="replace").splitlines()
                      if ln.startswith("Model:")), "NVIDIA GPU")
        names.append(Gpu(model, None))
    return names


def gpu_wants(plan: Plan) -> list[str]:
    """What in the recipe asks for a CUDA GPU."""
    t, m = plan.recipe.training, plan.recipe.method
    wants = [f"training.precision {t.precision}"] if t.precision in ("bf16", "fp16") else []
    if m.kind == "qlora":
        wants.append(f"{m.quant_bits}-bit QLoRA")
    return wants


def require_gpu(plan: Plan) -> None:
    """bf16/fp16 training cannot start without a CUDA GPU (the engine fails seconds into the launch): refuse now."""
    precision = plan.recipe.training.precision
    if plan.recipe.distributed.launcher == "slurm":
        return  # the job trains on the cluster's nodes; this machine only submits it
    if precision in ("bf16", "fp16") and not cuda_gpus():
        raise EngineError(f"training in {precision} needs a CUDA GPU, and none was found on this machine",
                          where="training.precision", hint="train on a GPU machine, or set it to fp32 to train "
                          "on the CPU (slowly)")


# ---------------------------------------------------------------- the model's size


def _model_folder(plan: Plan) -> Path | None:
    path = Path(plan.model_path)
    return path if path.is_absolute() and (path / "config.json").is_file() else None


def model_config(plan: Plan) -> dict | None:
    """config.json of the model (a local or pulled folder), else the published shape its id names."""
    from .models.memory import MODEL_CONFIGS, shape_of

    folder = _model_folder(plan)
    if folder is not None:
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            return config.get("text_config", config) if isinstance(config, dict) else None
        except (OSError, ValueError):
            return None
    shape = shape_of(plan.recipe.model.base)
    return MODEL_CONFIGS[shape] if shape else None


def weights_bytes(plan: Plan) -> int | None:
    """Bytes of the base weights: the pulled or local folder's files, or the pull record's."""
    folder = _model_folder(plan)
    if folder is not None:
        files = [p for g in WEIGHT_GLOBS for p in folder.glob(g)]
        return sum(p.stat().st_size for p in files) or None
    return None


@dataclass(frozen=True)
class DiskNeed:
    parts: list[tuple[str, float]]  # (what, bytes)
    source: str  # where the sizes come from
    free: float

    @property
    def total(self) -> float:
        return sum(b for _, b in self.parts)

    def line(self) -> str:
        parts = ", ".join(f"{what} {_size(b)}" for what, b in self.parts)
        enough = "" if self.free >= self.total else ": NOT enough"
        return (f"disk: the whole path needs about {_size(self.total)} ({parts}; {self.source}); "
                f"{_size(self.free)} free here{enough}")


def _size(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.95 * GB else f"{n / 1e6:.0f} MB"


def disk_need(plan: Plan) -> DiskNeed | None:
    """Base weights, the merged copy, the f16 GGUF and each quantization, estimated; None when the size is unknown."""
    from .models.memory import DTYPE_BYTES, config_params, gguf_bytes

    config = model_config(plan) or {}
    params = config_params(config)
    weights = weights_bytes(plan)
    dtype_bytes = DTYPE_BYTES.get(str(config.get("torch_dtype") or config.get("dtype")), 2)
    if weights is not None:
        source = "from the model's files"
        params = params or int(weights / dtype_bytes)
    elif params is not None:
        weights = params * dtype_bytes
        source = f"estimated from {params / 1e9:.1f}B parameters"
    else:
        return None
    quants = plan.recipe.export.quantizations
    parts = [("base weights", float(weights)), ("merged copy", float(weights)), ("f16 GGUF", gguf_bytes(params, "f16"))]
    parts += [(f"{q} GGUF", gguf_bytes(params, q)) for q in quants if q != "f16"]
    probe = plan.run_dir
    while not probe.exists():
        probe = probe.parent
    return DiskNeed(parts, source, shutil.disk_usage(probe).free)


def notes(plan: Plan) -> list[str]:
    """validate's notes on the machine: GPU (and the memory estimate against it), and disk."""
    out = []
    wants = gpu_wants(plan)
    estimate = _memory_estimate(plan) if wants else None
    peak = f"estimated peak {estimate:.1f} GiB of GPU memory per GPU" if estimate else None
    if wants:
        gpus = cuda_gpus()
        if not gpus and plan.recipe.distributed.launcher == "slurm":
            out.append(f"this recipe needs a CUDA GPU ({', '.join(wants)}) on each Slurm node (this machine only "
                       "submits the job)" + (f"; {peak}" if peak else ""))
        elif not gpus:
            out.append(f"this recipe needs a CUDA GPU ({', '.join(wants)}) and none was found here"
                       + (f"; {peak}" if peak else ""))
        elif peak:
            known = [g for g in gpus if g.memory_gib]
            if known:
                smallest = min(known, key=lambda g: g.memory_gib or 0)
                fits = "fits" if estimate <= smallest.memory_gib else "does NOT fit"
                out.append(f"GPU: {peak}; {smallest.name} has {smallest.memory_gib:.1f} GiB: {fits} "
                           "(see benchmarks/memory_estimate.py for the parts)")
    need = disk_need(plan)
    if need is not None and (plan.is_hub or need.free < need.total):
        out.append(need.line())
    return out


def _memory_estimate(plan: Plan) -> float | None:
    from .models.memory import estimate

    config = model_config(plan)
    if not config or not all(isinstance(config.get(k), int) for k in
                             ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                              "vocab_size")):
        return None
    config = {**config, "num_key_value_heads": config.get("num_key_value_heads") or config["num_attention_heads"]}
    return estimate(plan.recipe, config)["total"]
