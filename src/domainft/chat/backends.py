"""The two backends behind ChatModel, and which one a recipe, a .gguf file or a model folder gets.

- `gguf`: an exported GGUF through llama-cpp-python (the chat template stored in the GGUF);
- `hf`: the base model plus the trained PEFT adapter (or a merged/full HF folder) through transformers.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import UserError
from ..llama_server import N_CTX
from ..plan import Plan
from ..run_files import read_export_record
from .model import Backend, ChatModel, ChatSettings


class GGUFChat(ChatModel):
    backend = "gguf"

    def __init__(self, path: Path, settings: ChatSettings, n_ctx: int = N_CTX, seed: int = 42):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise UserError("the gguf backend needs llama-cpp-python", hint="run: scripts/llamacpp_tools.sh <venv>") from None
        self.source = str(path)
        self.settings = settings
        try:
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=os.cpu_count(), seed=seed, verbose=False)
        except ValueError:  # llama.cpp says only "Failed to load model from file"
            raise UserError("llama.cpp cannot load this file (not a GGUF model, or a truncated one)", where=path) from None

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        s = self.settings.sampling
        chunks = self.llm.create_chat_completion(
            messages=messages, temperature=s.temperature, top_p=s.top_p, repeat_penalty=s.repetition_penalty,
            max_tokens=s.max_new_tokens, stream=True,
        )
        for chunk in chunks:
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                yield piece

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0


class HFChat(ChatModel):
    backend = "hf"

    def __init__(self, model_dir: Path, settings: ChatSettings, adapter: Path | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.source = str(adapter or model_dir)
        self.settings = settings
        tok_dir = adapter if adapter and (adapter / "tokenizer_config.json").exists() else model_dir
        self.tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
        self.model = model.eval()

    def prompt_ids(self, messages: list[dict[str, str]]):
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        s = self.settings.sampling
        inputs = self.prompt_ids(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        if s.temperature > 0:
            sampling = {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p}
        else:  # greedy; None clears the model's generation_config sampling defaults
            sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        kwargs = dict(**inputs, max_new_tokens=s.max_new_tokens, repetition_penalty=s.repetition_penalty,
                      streamer=streamer, pad_token_id=self.tokenizer.pad_token_id, **sampling)
        failure: list[BaseException] = []

        def work():
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        yield from (piece for piece in streamer if piece)
        thread.join()
        if failure:
            raise failure[0]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


# ---------------------------------------------------------------- loading


def load_chat_model(plan_or_path: Plan | str | Path, backend: Backend = "auto", *,
                    settings: ChatSettings | None = None, n_ctx: int = N_CTX) -> ChatModel:
    """A Plan (its exported GGUF, else base + adapter), a .gguf file, an adapter folder or an HF model folder."""
    if backend not in ("auto", "gguf", "hf"):
        raise UserError(f"unknown backend '{backend}'", where="--backend", hint="auto, gguf or hf")
    if isinstance(plan_or_path, Plan):
        plan = plan_or_path
        settings = settings or ChatSettings.from_plan(plan)
        gguf = exported_gguf(plan)
        if backend == "gguf" or (backend == "auto" and gguf is not None and _has_llama_cpp()):
            if gguf is None:
                raise UserError("no exported GGUF; run `domainft export` first", where=plan.export_dir)
            return GGUFChat(gguf, settings, n_ctx=n_ctx)
        return _hf_from_plan(plan, settings)
    path = Path(plan_or_path).expanduser()
    settings = settings or ChatSettings()
    if not path.exists():
        raise UserError("no such model file or folder", where=path)
    if path.is_file():
        if path.suffix != ".gguf" or backend == "hf":
            raise UserError("a file must be a .gguf model (use a folder for the hf backend)", where=path)
        return GGUFChat(path, settings, n_ctx=n_ctx)
    if backend == "gguf":
        raise UserError("the gguf backend needs a .gguf file", where=path)
    if (path / "adapter_config.json").exists():
        base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base:
            raise UserError("adapter_config.json names no base_model_name_or_path", where=path / "adapter_config.json")
        return HFChat(Path(base), settings, adapter=path)
    if (path / "config.json").exists():
        return HFChat(path, settings)
    raise UserError("not a GGUF file, a PEFT adapter folder or an HF model folder", where=path)


def exported_gguf(plan: Plan) -> Path | None:
    """The GGUF the Modelfile points at (export.json), if the export ran."""
    record = read_export_record(plan.export_dir)
    if record is None:
        return None
    path = plan.export_dir / record["modelfile_from"]
    return path if path.exists() else None


def _hf_from_plan(plan: Plan, settings: ChatSettings) -> HFChat:
    trained = plan.adapter_dir
    if plan.recipe.method.kind == "full" and (trained / "config.json").exists():
        return HFChat(trained, settings)
    if not (trained / "adapter_config.json").exists():
        raise UserError("no trained adapter; run `domainft train` first", where=trained)
    from ..models import base_folder

    return HFChat(base_folder(plan), settings, adapter=trained)


def _has_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None
