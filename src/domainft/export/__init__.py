"""Ship the tuned model: merge (through the engine), convert to GGUF, quantize, write an Ollama Modelfile.

Everything lands in plan.export_dir:
    merged/                       full HF weights (the engine's merge; the training output itself for `full`)
    <name>-f16.gguf               llama.cpp's converter output, the source of every quantization
    <name>-<quant>.gguf           one per requested quantization
    <name>-lora-f16.gguf          the adapter alone (recipe.export.lora_gguf)
    Modelfile                     FROM the first quantized file
    export.json                   what was made: sizes, sha256, seconds
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..chat_formats import deploy_chat_template
from ..errors import RecipeError, UserError
from ..fsutil import atomic_write
from ..plan import Plan
from ..recipe import QUANTS
from ..run_files import write_export_record
from .gguf import FTYPES, convert_hf_to_gguf, convert_lora_to_gguf, quantize
from .modelfile import chat_format, render_modelfile

__all__ = ["ExportResult", "ExportedFile", "chat_format", "parse_quants", "render_modelfile", "run_export"]

@dataclass(frozen=True)
class ExportedFile:
    path: str  # relative to the export folder
    kind: str  # gguf | lora-gguf | modelfile
    quant: str | None
    bytes: int
    sha256: str


@dataclass
class ExportResult:
    export_dir: Path
    merged_dir: Path
    files: list[ExportedFile] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def gguf(self, quant: str) -> Path:
        for item in self.files:
            if item.kind == "gguf" and item.quant == quant:
                return self.export_dir / item.path
        raise KeyError(quant)

    @property
    def modelfile(self) -> Path:
        return self.export_dir / "Modelfile"


def parse_quants(text: str) -> list[str]:
    """`q4_k_m,q8_0` from the command line -> a checked list."""
    quants = [q.strip().lower() for q in text.split(",") if q.strip()]
    _check_quants(quants, where="--quant")
    return quants


def _check_quants(quants: list[str], where: str) -> None:
    if not quants:
        raise RecipeError("no quantization given", where=where, hint=f"one or more of {', '.join(QUANTS)}")
    for quant in quants:
        if quant not in FTYPES:
            from ..errors import did_you_mean

            raise RecipeError(f"unknown quantization '{quant}'", where=where,
                              hint=did_you_mean(quant, FTYPES) or f"one of {', '.join(FTYPES)}")


def run_export(plan: Plan, quants: list[str] | None = None) -> ExportResult:
    """Merge, convert, quantize, write the Modelfile and export.json. Returns what was written."""
    from ..manifest import sha256_file

    recipe = plan.recipe
    where = "--quant" if quants is not None else "export.quantizations"
    quants = list(dict.fromkeys(quants if quants is not None else recipe.export.quantizations))
    _check_quants(quants, where=where)
    out = plan.export_dir
    out.mkdir(parents=True, exist_ok=True)
    logs = plan.run_dir / "logs"
    result = ExportResult(export_dir=out, merged_dir=out / "merged")
    adapter = plan.adapter_dir
    if not adapter.is_dir():
        raise UserError("no trained model to export; run `domainft train` first", where=adapter)

    # 1. Full HF weights. A full fine-tune's output already is one; a LoRA goes through the engine's merge
    #    (`llamafactory-cli export` / `axolotl merge-lora`), into a temp folder renamed into place.
    started = time.monotonic()
    if recipe.method.kind == "full":
        merged = adapter
    else:
        merged = result.merged_dir
        _merge_via_engine(plan, merged)
    result.merged_dir = merged
    result.seconds["merge"] = round(time.monotonic() - started, 1)

    # 2. f16 GGUF from llama.cpp's own converter: the source every quantization starts from.
    name = recipe.name
    started = time.monotonic()
    f16 = convert_hf_to_gguf(merged, out / f"{name}-f16.gguf", outtype="f16", log_path=logs / "export-convert.log")
    result.seconds["convert"] = round(time.monotonic() - started, 1)
    made: list[tuple[Path, str, str | None]] = [(f16, "gguf", "f16")]

    # 3. Quantize.
    for quant in quants:
        if quant == "f16":
            continue
        started = time.monotonic()
        path = quantize(f16, out / f"{name}-{quant}.gguf", quant, log_path=logs / "export-quantize.log")
        result.seconds[f"quantize_{quant}"] = round(time.monotonic() - started, 1)
        made.append((path, "gguf", quant))

    # 4. The adapter alone, for llama.cpp --lora / Ollama ADAPTER on top of the base model's GGUF.
    if recipe.export.lora_gguf and recipe.method.kind != "full":
        from ..models import base_folder

        base = base_folder(plan)
        started = time.monotonic()
        lora = convert_lora_to_gguf(adapter, base, out / f"{name}-lora-f16.gguf", log_path=logs / "export-lora.log")
        result.seconds["lora_gguf"] = round(time.monotonic() - started, 1)
        made.append((lora, "lora-gguf", "f16"))

    # 5. Modelfile FROM the first quantized file asked for (f16 when nothing else was).
    target = next((p for p, kind, q in made if kind == "gguf" and q == quants[0]), f16)
    _write_text(result.modelfile, render_modelfile(recipe, target.name))
    made.append((result.modelfile, "modelfile", None))

    result.files = [
        ExportedFile(str(p.relative_to(out)), kind, quant, p.stat().st_size, sha256_file(p)) for p, kind, quant in made
    ]
    record = {
        "recipe": recipe.name,
        "recipe_sha256": recipe.content_hash(),
        "engine": plan.engine,
        "merged_dir": str(merged),
        "modelfile_from": target.name,
        "files": [asdict(f) for f in result.files],
        "seconds": result.seconds,
    }
    write_export_record(out, record)
    return result


def _merge_via_engine(plan: Plan, merged: Path) -> None:
    from ..train import merge

    from ..models import base_folder

    base_folder(plan)
    for stale in merged.parent.glob(".merged.*"):  # left by a merge that was killed: never finished, never used
        shutil.rmtree(stale, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(dir=merged.parent, prefix=".merged."))
    try:
        merge(plan, partial)
        if not (partial / "config.json").exists():
            raise UserError("the engine's merge wrote no config.json", where=partial)
        deploy_chat_template(plan.recipe, partial)  # the GGUF's chat template prompts as training did
        if merged.exists():
            shutil.rmtree(merged)
        partial.chmod(0o755)  # mkdtemp makes it owner-only; the merged model is meant to be shared
        os.replace(partial, merged)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, text)
