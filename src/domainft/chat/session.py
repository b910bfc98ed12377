"""`domainft chat` itself: one question, a questions file or the interactive loop; and the answer `domainft run`
prints at the end."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..plan import Plan
from ..run_files import read_jsonl
from .ask import Rag, ask, sources_text
from .backends import exported_gguf, load_chat_model
from .batch import run_batch
from .model import Backend, ChatModel, ChatSettings, Think
from .think import split_think

EXIT_COMMANDS = ("/exit", "/quit", "/bye")


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
