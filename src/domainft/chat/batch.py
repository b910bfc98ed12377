"""A questions file -> results.json, one entry per question, written after each."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..fsutil import atomic_write_json
from .ask import Rag, ask
from .model import ChatModel, Think


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
