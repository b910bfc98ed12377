"""One question to a loaded model -> Answer; with --rag, the run's best passages before it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..plan import Plan
from .model import Answer, ChatModel, Think
from .think import ThinkFilter, split_think


@dataclass(frozen=True)
class Rag:
    """`chat --rag`: the run's chunks behind BM25; each question goes to the model with its top passages before it
    (eval_tasks/retrieval_prompt.yaml), and the answer cites them."""

    retriever: Any  # domainft.retrieval.Retriever
    top_k: int

    @classmethod
    def for_plan(cls, plan: Plan) -> Rag:
        from ..retrieval import run_retriever

        chunks = plan.extract_dir / "chunks.jsonl"
        if not chunks.exists():
            raise UserError("--rag searches the run's own chunks: run extract first", where=chunks)
        return cls(run_retriever(chunks), plan.recipe.eval.retrieval_top_k)

    def prompt(self, question: str) -> tuple[str, tuple[str, ...]]:
        """The question with its passages before it, and the passages' citations in the order they are numbered."""
        from ..retrieval import with_passages

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
