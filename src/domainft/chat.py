"""Talk to the model: one question, an interactive loop, or a questions file -> results.json.

Two backends behind one small interface:
- `gguf`: an exported GGUF through llama-cpp-python (the chat template stored in the GGUF);
- `hf`: the base model plus the trained PEFT adapter (or a merged/full HF folder) through transformers.
Both use the recipe's system prompt and sampling. R1-style `<think>` blocks are shown or hidden (`think`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .chat_formats import fold_system
from .errors import DataError, UserError
from .fsutil import atomic_write_json
from .llama_server import N_CTX
from .plan import Plan
from .recipe import SamplingConfig
from .run_files import read_export_record, read_jsonl

Backend = Literal["auto", "gguf", "hf"]
Think = Literal["show", "hide"]
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EXIT_COMMANDS = ("/exit", "/quit", "/bye")


@dataclass(frozen=True)
class ChatSettings:
    """What the recipe says about talking: system prompt, sampling, whether answers open with a think block."""

    system_prompt: str = ""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    thinking: bool = False
    system_prompt_in: str = "system"  # "user": the system prompt opens the first user turn (as training had it)

    @classmethod
    def from_overrides(cls, overrides: list[str]) -> ChatSettings:
        """Settings for a bare .gguf or model folder from `-s` overrides: sampling.* and model.system_prompt /
        model.enable_thinking, validated as in a recipe (the rest of a recipe means nothing without one)."""
        from .recipe import recipe_from_dict
        from .recipe_file import apply_override

        data: dict[str, Any] = {"name": "chat", "dataset": {"files": ["none.jsonl"]}}
        for item in overrides:
            key = item.partition("=")[0]
            if not key.startswith(("sampling.", "model.system_prompt", "model.enable_thinking")):
                raise UserError(f"'{key}' means nothing without a recipe", where="-s",
                                hint="with a model file, -s takes sampling.*, model.system_prompt(_in) and "
                                     "model.enable_thinking")
            apply_override(data, item)
        recipe = recipe_from_dict(data)
        return cls(recipe.model.system_prompt, recipe.sampling, recipe.model.enable_thinking,
                   recipe.model.system_prompt_in)

    @classmethod
    def from_plan(cls, plan: Plan) -> ChatSettings:
        # The deployed chat template closes an R1 model's think block in the prompt unless thinking is on
        # (chat_formats.empty_think): an answer opens with a think block only then.
        model = plan.recipe.model
        return cls(model.system_prompt, plan.recipe.sampling, model.enable_thinking, model.system_prompt_in)


@dataclass(frozen=True)
class Answer:
    text: str  # the answer; with think="hide" the <think> block is removed
    seconds: float
    tokens: int  # generated tokens
    thinking: str | None = None  # the <think> block's content, when there was one
    sources: tuple[str, ...] = ()  # with --rag: the passages put before the question, "[n] file › section"

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class ChatModel:
    """A loaded model. `stream(messages)` yields text pieces; `count_tokens` measures the answer."""

    backend: str
    source: str
    settings: ChatSettings

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def messages(self, question: str, history: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
        """The conversation as the model was trained on it: the system prompt as a system message, or opening the
        first user turn (system_prompt_in user; the deployed chat template would move it there too)."""
        system = [{"role": "system", "content": self.settings.system_prompt}] if self.settings.system_prompt else []
        messages = [*system, *(history or []), {"role": "user", "content": question}]
        return fold_system(messages) if self.settings.system_prompt_in == "user" else messages


# ---------------------------------------------------------------- backends


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
    from .models import base_folder

    return HFChat(base_folder(plan), settings, adapter=trained)


def _has_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


# ---------------------------------------------------------------- asking


def split_think(text: str) -> tuple[str | None, str]:
    """(thinking, answer). The opening tag may be missing: R1 templates put `<think>` in the prompt."""
    if THINK_CLOSE in text:
        thinking, answer = text.split(THINK_CLOSE, 1)
        thinking = thinking.strip()
        thinking = thinking.removeprefix(THINK_OPEN)
        return thinking.strip(), answer.strip()
    if text.lstrip().startswith(THINK_OPEN):  # cut off while still thinking
        return text.lstrip()[len(THINK_OPEN):].strip(), ""
    return None, text


class ThinkFilter:
    """Streaming side of think="hide": holds text back while it may still be inside a think block."""

    def __init__(self, mode: Think, expect_thinking: bool):
        self.mode, self.expect = mode, expect_thinking
        self.buffer = ""
        self.passing = mode == "show"

    def feed(self, piece: str) -> str:
        if self.passing:
            return piece
        self.buffer += piece
        if THINK_CLOSE in self.buffer:
            self.passing = True
            return self.buffer.split(THINK_CLOSE, 1)[1].lstrip()
        head = self.buffer.lstrip()
        opening = head.startswith(THINK_OPEN) or THINK_OPEN.startswith(head)
        if not opening and not self.expect:  # plainly no think block: stream from here on
            self.passing = True
            return self.buffer
        return ""

    def finish(self) -> str:
        """What is still held at the end: everything, when the think block never closed nor opened."""
        if self.passing:
            return ""
        _, answer = split_think(self.buffer)
        return answer


@dataclass(frozen=True)
class Rag:
    """`chat --rag`: the run's chunks behind BM25; each question goes to the model with its top passages before it
    (eval_tasks/retrieval_prompt.yaml), and the answer cites them."""

    retriever: Any  # domainft.retrieval.Retriever
    top_k: int

    @classmethod
    def for_plan(cls, plan: Plan) -> Rag:
        from .retrieval import run_retriever

        chunks = plan.extract_dir / "chunks.jsonl"
        if not chunks.exists():
            raise UserError("--rag searches the run's own chunks: run extract first", where=chunks)
        return cls(run_retriever(chunks), plan.recipe.eval.retrieval_top_k)

    def prompt(self, question: str) -> tuple[str, tuple[str, ...]]:
        """The question with its passages before it, and the passages' citations in the order they are numbered."""
        from .retrieval import with_passages

        hits = self.retriever.search(question, self.top_k)
        return with_passages(question, hits), tuple(f"[{n}] {h.citation}" for n, h in enumerate(hits, 1))


def ask(model: ChatModel, question: str, *, think: Think = "hide", on_text: Callable[[str], Any] | None = None,
        history: list[dict[str, str]] | None = None, rag: Rag | None = None) -> Answer:
    """One question -> Answer. `on_text` receives the answer as it streams (think block hidden when asked). With
    `rag`, the model reads the retrieved passages before the question and the answer lists them as its sources."""
    started = time.perf_counter()
    pieces: list[str] = []
    shown = ThinkFilter(think, model.settings.thinking)
    prompt, sources = rag.prompt(question) if rag is not None else (question, ())
    for piece in model.stream(model.messages(prompt, history)):
        pieces.append(piece)
        if on_text and (visible := shown.feed(piece)):
            on_text(visible)
    if on_text and (rest := shown.finish()):
        on_text(rest)
    seconds = time.perf_counter() - started
    raw = "".join(pieces)
    thinking, answer = split_think(raw)
    return Answer(text=raw if think == "show" else answer, seconds=round(seconds, 3),
                  tokens=model.count_tokens(raw), thinking=thinking, sources=sources)


def sources_text(answer: Answer) -> str:
    """The passages an answer was given, one per line under "Sources:" ('' without --rag)."""
    return "Sources:\n" + "\n".join(answer.sources) + "\n" if answer.sources else ""


# ---------------------------------------------------------------- interactive and batch


def interactive(model: ChatModel, *, think: Think = "hide", read: Callable[[str], str] = input,
                write: Callable[[str], Any] = sys.stdout.write, rag: Rag | None = None) -> None:
    """A streaming chat loop keeping the conversation; /reset forgets it, /exit (or Ctrl-D) leaves."""
    write(f"Chatting with {model.source} ({model.backend}). /reset forgets the conversation, /exit leaves.\n")
    history: list[dict[str, str]] = []
    while True:
        try:
            question = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return
        if not question:
            continue
        if question in EXIT_COMMANDS:
            return
        if question == "/reset":
            history.clear()
            continue
        write("model> ")
        answer = ask(model, question, think=think, on_text=write, history=history, rag=rag)
        write(f"\n{sources_text(answer)}[{answer.tokens} tokens, {answer.seconds:.1f} s, {answer.tokens_per_s:.1f} tok/s]\n")
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": split_think(answer.text)[1]}]


@dataclass(frozen=True)
class Question:
    index: int
    text: str | None  # None when the line could not be read; `error` says why
    where: str
    reference: str | None = None
    error: str | None = None


def read_questions(path: str | Path) -> list[Question]:
    """Questions from a file: a JSON array (of strings, or of objects), JSONL (one object a line), or plain text
    (one question per non-empty line). An object's question is "question" or "instruction" (+ "input"), or "input"
    alone (CoalQA's own files); "answer" or "output" is kept as the reference. An item that cannot be read becomes
    a Question with an error, so it gets its own entry in results.json."""
    path = Path(path)
    if not path.is_file():
        raise DataError("questions file not found", where=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})", where=path) from None
    items: list[tuple[str, Any]] = []  # (where, item or the error text)
    whole = _json_array(text) if path.suffix in (".json", ".jsonl") else None
    if whole is not None:
        items = [(f"{path}[{i}]", item) for i, item in enumerate(whole)]
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if path.suffix not in (".jsonl", ".json"):
                items.append((f"{path}:{number}", line.strip()))
                continue
            try:
                items.append((f"{path}:{number}", json.loads(line)))
            except ValueError as exc:
                items.append((f"{path}:{number}", ValueError(str(exc))))
    questions = [_question(i, where, item) for i, (where, item) in enumerate(items)]
    if not questions:
        raise DataError("no questions in the file", where=path)
    return questions


def _json_array(text: str) -> list | None:
    """The file as one JSON array, or None (then it is read line by line)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _question(index: int, where: str, item: Any) -> Question:
    if isinstance(item, Exception):
        return Question(index, None, where, error=f"{where}: {item}")
    if isinstance(item, str):
        return Question(index, item.strip(), where) if item.strip() else Question(index, None, where,
                                                                                  error=f"{where}: empty question")
    if not isinstance(item, dict):
        return Question(index, None, where, error=f"{where}: expected a string or a JSON object")
    text = item.get("question") or item.get("instruction")
    extra = item.get("input")
    if isinstance(text, str) and text.strip():
        if isinstance(extra, str) and extra.strip():
            text = f"{text}\n{extra}"
    elif isinstance(extra, str) and extra.strip():
        text = extra  # CoalQA's files: {"input": question, "output": answer}
    else:
        return Question(index, None, where, error=f'{where}: no "question", "instruction" or "input" text')
    reference = item.get("answer") or item.get("output")
    return Question(index, text, where, reference if isinstance(reference, str) else None)


def run_batch(model: ChatModel, questions_file: str | Path, out_path: str | Path, *, think: Think = "hide",
              on_result: Callable[[dict[str, Any]], Any] | None = None, rag: Rag | None = None) -> dict[str, Any]:
    """Answer every question; write results.json (after each question, atomically) with one entry per
    question. A question that fails gets its error in its entry and the batch goes on."""
    questions = read_questions(questions_file)
    out_path = Path(out_path)
    report: dict[str, Any] = {
        "model": model.source, "backend": model.backend, "think": think,
        "system_prompt": model.settings.system_prompt, "sampling": model.settings.sampling.model_dump(),
        "questions_file": str(questions_file), "results": [],
    }
    started = time.perf_counter()
    for q in questions:
        entry: dict[str, Any] = {"index": q.index, "question": q.text, "source": q.where}
        if q.reference is not None:
            entry["reference"] = q.reference
        if q.error:
            entry.update(answer=None, error=q.error)
        else:
            try:
                answer = ask(model, q.text or "", think=think, rag=rag)
                entry.update(answer=answer.text, thinking=answer.thinking, seconds=answer.seconds,
                             tokens=answer.tokens, tokens_per_s=round(answer.tokens_per_s, 2), error=None)
                if rag is not None:
                    entry["sources"] = list(answer.sources)
            except Exception as exc:  # noqa: BLE001 - one bad question must not end the batch; its entry says why
                entry.update(answer=None, error=f"{type(exc).__name__}: {exc}")
        report["results"].append(entry)
        report["seconds"] = round(time.perf_counter() - started, 3)
        report["failed"] = sum(1 for r in report["results"] if r["error"])
        _write_json(out_path, report)
        if on_result:
            on_result(entry)
    return report


def _write_json(path: Path, value: Any) -> None:
    atomic_write_json(path, value)


# ---------------------------------------------------------------- CLI entry points


def main(source: Plan | Path, *, question: str | None, questions: Path | None, output: Path,
         backend: Backend = "auto", think: Think = "hide", settings: ChatSettings | None = None,
         rag: bool = False) -> None:
    """`domainft chat`: one question (-q), a questions file (--questions), else the interactive loop. With `rag`
    (a recipe only: its run's chunks), each answer reads the retrieved passages and cites them."""
    if think not in ("show", "hide"):
        raise UserError(f"unknown --think mode '{think}'", where="--think", hint="show or hide")
    if questions is not None and not Path(questions).is_file():
        raise UserError("questions file not found", where=questions)
    if rag and not isinstance(source, Plan):
        raise UserError("--rag searches a run's own chunks: pass the recipe, not a model file", where="--rag")
    retrieval = Rag.for_plan(source) if rag else None
    model = load_chat_model(source, backend, settings=settings)
    if question is not None:
        answer = ask(model, question, think=think, on_text=lambda t: (sys.stdout.write(t), sys.stdout.flush()),
                     rag=retrieval)
        sys.stdout.write(f"\n{sources_text(answer)}[{answer.tokens} tokens, {answer.seconds:.1f} s]\n")
    elif questions is not None:
        summary = run_batch(model, questions, output, think=think, rag=retrieval)
        answered = len(summary["results"]) - summary["failed"]
        sys.stdout.write(f"{answered} of {len(summary['results'])} questions answered in {summary['seconds']} s; "
                         f"results: {Path(output).resolve()}\n")
        if summary["failed"]:
            first = next(r for r in summary["results"] if r["error"])
            raise UserError(f"{summary['failed']} question(s) failed, the first: {first['error']}", where=output)
    else:
        interactive(model, think=think, rag=retrieval)


def sample_question(plan: Plan) -> str | None:
    """A question from the run's own held-out data, else from the recipe's dataset files."""
    candidates = [plan.eval_split_files.get("test"), *[plan.recipe.resolve(f) for f in plan.recipe.dataset.files]]
    for path in candidates:
        if path is None or not Path(path).is_file():
            continue
        for record in read_jsonl(path, skip_bad=True):
            if record.get("instruction"):
                return str(record["instruction"])
    return None


def final_answer(plan: Plan, question: str | None = None) -> str | None:
    """What `domainft run` prints at the end: the finished model answering one question."""
    question = question or sample_question(plan)
    if question is None or (exported_gguf(plan) is None and not (plan.adapter_dir / "adapter_config.json").exists()):
        return None
    model = load_chat_model(plan)
    answer = ask(model, question)
    return f"\nQ: {question}\nA ({model.backend}: {model.source}): {answer.text.strip()}\n" \
           f"[{answer.tokens} tokens, {answer.seconds:.1f} s]"
