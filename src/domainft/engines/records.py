"""Training records as the engines read them: the first records of a data file (checked for columns), and one
record with the recipe's system prompt folded into its first user turn (what the rendered folder's data holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..chat_formats import user_turn
from ..errors import DataError
from ..run_files import iter_jsonl

SAMPLE_RECORDS = 5  # columns are checked against the first records of each file


def sample_records(path: Path, limit: int | None = SAMPLE_RECORDS) -> list[dict[str, Any]]:
    """The first `limit` records (None: all) of a JSON (list of objects) or JSONL file."""
    if not path.exists():
        raise DataError("training data file not found", where=path)
    records: list[Any] = []
    try:
        if path.suffix == ".jsonl":
            for _, record in iter_jsonl(path, what="a JSON record"):
                records.append(record)
                if limit is not None and len(records) >= limit:
                    break
        elif path.suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", where=f"{path}:{exc.lineno}") from None
            if not isinstance(data, list):
                raise DataError("expected a JSON list of records", where=path)
            records = data[:limit]
        else:
            raise DataError("training data must be .json or .jsonl", where=path)
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", where=path) from None
    if not records:
        raise DataError("no records", where=path)
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(f"record {i + 1} is a {type(rec).__name__}, expected an object", where=path)
    return records


def fold_record(rec: dict[str, Any], text: str, fmt: str, cols: dict[str, str], tags: dict[str, str],
                answer_prefix: str = "") -> dict[str, Any]:
    """One record with `text` opening its first user turn and `answer_prefix` opening each answer."""
    rec = dict(rec)

    def answer(value: Any) -> str:
        value = str(value or "")
        return value if value.startswith(answer_prefix) else answer_prefix + value

    if fmt == "sharegpt":
        messages = [dict(m) if isinstance(m, dict) else m for m in rec.get(cols["messages"]) or []]
        turns = [m for m in messages if isinstance(m, dict)]
        first = next((m for m in turns if m.get(tags["role_tag"]) == tags["user_tag"]), None)
        if first is not None and text:
            first[tags["content_tag"]] = user_turn(text, str(first.get(tags["content_tag"]) or ""))
        for m in turns:
            if answer_prefix and m.get(tags["role_tag"]) == tags["assistant_tag"]:
                m[tags["content_tag"]] = answer(m.get(tags["content_tag"]))
        rec[cols["messages"]] = messages
        return rec
    if answer_prefix:
        rec[cols["response"]] = answer(rec.get(cols["response"]))
    if not text:
        return rec
    history = rec.get(cols["history"]) if "history" in cols else None
    if isinstance(history, list) and history and isinstance(history[0], list) and history[0]:
        rec[cols["history"]] = [[user_turn(text, str(history[0][0])), *history[0][1:]], *history[1:]]
    elif rec.get(cols["prompt"]):  # the engines join instruction and input with a newline: the prompt goes first
        rec[cols["prompt"]] = user_turn(text, str(rec[cols["prompt"]]))
    else:
        rec[cols["query"]] = user_turn(text, str(rec.get(cols["query"]) or ""))
    return rec
