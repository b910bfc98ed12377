"""The review journal: one JSON line per decision a person made on a pair, appended, never rewritten.

    {"ts", "user", "pair_id", "action": accept|reject|edit, "before_hash", "after_hash", "source_hash",
     "edit": {"instruction", "output"}}   (edit only)

Each line is written with one write() under an flock and fsync'd before the page answers, so two tabs or two
servers never interleave and a kill -9 can at worst leave a torn last line, which readers skip and the next
append cuts off. Order in the file is the order of decisions: the latest per pair wins. `source_hash` is the
pair as datagen generated it; a decision on a pair that has since been regenerated differently no longer applies.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, UserError
from ..fsutil import file_lock
from ..run_files import AppendJournal

ACTIONS = ("accept", "reject", "edit")
EDITABLE = ("instruction", "output")


def pair_id(record: dict[str, Any]) -> str | None:
    """`<chunk_id>#<index>`: a pair's name in curation.jsonl, set_aside.jsonl, the journal and the review page."""
    source = record.get("source") or {}
    if source.get("chunk_id") is None or source.get("index") is None:
        return None
    return f"{source['chunk_id']}#{source['index']}"


def pair_hash(record: dict[str, Any]) -> str:
    """What a person judged: the alpaca text of the pair, not its provenance."""
    text = json.dumps([record.get("instruction", ""), record.get("input", ""), record.get("output", "")],
                      ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return f"uid{os.getuid()}"


@dataclass
class PairState:
    """A pair after every decision on it: status of the latest, text of the latest edit."""

    status: str = "pending"  # pending | accepted | edited | rejected
    instruction: str | None = None  # set when an edit is in effect
    output: str | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any] | None:
        return self.decisions[-1] if self.decisions else None

    def apply_to(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as training sees it: the edited text in place of the generated one."""
        if self.instruction is None:
            return record
        return {**record, "instruction": self.instruction, "output": self.output}


def fold(entries: list[dict[str, Any]], pairs: dict[str, dict[str, Any]]) -> tuple[dict[str, PairState], int]:
    """Per pair id, the state the decisions leave it in; and how many decisions were stale (made on a pair
    datagen has since regenerated with different text, or that no longer exists)."""
    states: dict[str, PairState] = {}
    stale = 0
    for entry in entries:
        pid = entry.get("pair_id")
        pair = pairs.get(pid)
        if pair is None or entry.get("source_hash") != pair_hash(pair):
            stale += 1
            continue
        state = states.setdefault(pid, PairState())
        state.decisions.append(entry)
        if entry["action"] == "edit":
            state.instruction, state.output = entry["edit"]["instruction"], entry["edit"]["output"]
        if entry["action"] == "reject":
            state.status = "rejected"
        else:  # an accept after an edit keeps the edited text: the person accepted what they saw
            state.status = "edited" if state.instruction is not None else "accepted"
    return states, stale


def apply_review(rows: list[dict[str, Any]], entries: list[dict[str, Any]], accepted_only: bool
                 ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Rows of one split with the decisions applied: rejected pairs out, edited ones in their edited text, and with
    `accepted_only` every pair no person accepted (or edited) out. Also {pair_id: why it was dropped}."""
    by_id = {pid: r for r in rows if (pid := pair_id(r)) is not None}
    states, _ = fold(entries, by_id)
    kept, dropped = [], {}
    for row in rows:
        pid = pair_id(row)
        state = states.get(pid) if pid else None
        status = state.status if state else "pending"
        if status == "rejected":
            dropped[pid] = "rejected in review"
        elif accepted_only and status == "pending":
            dropped[pid or ""] = "not accepted in review (review.accepted_only)"
        else:
            kept.append(state.apply_to(row) if state else row)
    dropped.pop("", None)
    return kept, dropped


class Journal:
    """review/journal.jsonl in the run folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lock_path = self.path.parent / f".{self.path.name}.lock"

    def read(self, limit_bytes: int | None = None) -> list[dict[str, Any]]:
        """Every committed decision, in order. A torn last line (a writer killed mid-line) is not a decision yet;
        a broken line before it is someone's hand edit and is refused, naming the line."""
        entries = []
        for number, line in AppendJournal(self.path).committed(limit_bytes):  # a torn last line is not in it
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if entry.get("action") not in ACTIONS or not isinstance(entry.get("pair_id"), str):
                    raise ValueError("needs pair_id and action accept, reject or edit")
                if entry["action"] == "edit" and not all(isinstance((entry.get("edit") or {}).get(k), str)
                                                         for k in EDITABLE):
                    raise ValueError("an edit needs edit.instruction and edit.output")
            except (ValueError, UnicodeDecodeError, AttributeError) as exc:
                raise DataError(f"not a review decision ({exc})", where=f"{self.path}:{number}",
                                hint="the journal is append-only: remove the line by hand or restore it") from None
            entries.append(entry)
        return entries

    def decide(self, pair: dict[str, Any], action: str, *, instruction: str | None = None,
               output: str | None = None, user: str | None = None) -> dict[str, Any]:
        """Append one decision on `pair` (the record as datagen generated it) and return it once it is on disk."""
        if action not in ACTIONS:
            raise UserError(f"unknown review action '{action}'", hint="accept, reject or edit")
        pid = pair_id(pair)
        if pid is None:
            raise DataError("pair has no source.chunk_id/index", where=self.path)
        if action == "edit":
            instruction, output = (instruction or "").strip(), (output or "").strip()
            if not instruction or not output:
                raise UserError("an edit needs a question and an answer", where=pid)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_path), AppendJournal(self.path) as journal:
            journal.repair()
            # Read under the lock: the state another tab or process just wrote is the 'before' of this decision.
            states, _ = fold([e for e in self.read() if e.get("pair_id") == pid], {pid: pair})
            before = states[pid].apply_to(pair) if pid in states else pair
            after = {**before, "instruction": instruction, "output": output} if action == "edit" else before
            entry: dict[str, Any] = {
                "ts": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "user": user or current_user(), "pair_id": pid, "action": action,
                "before_hash": pair_hash(before), "after_hash": None if action == "reject" else pair_hash(after),
                "source_hash": pair_hash(pair),
            }
            if action == "edit":
                entry["edit"] = {"instruction": instruction, "output": output}
            journal.append(entry)
        return entry


def describe(entries: list[dict[str, Any]]) -> str:
    """'3 review decisions (1 accept, 1 edit, 1 reject) on 3 pairs, last by alice at 2025-05-01T10:00:00Z'."""
    if not entries:
        return "no review decisions"
    counts = Counter(e["action"] for e in entries)
    parts = ", ".join(f"{counts[a]} {a}" for a in ACTIONS if counts[a])
    last = entries[-1]
    pairs = len({e["pair_id"] for e in entries})
    return (f"{len(entries)} review decision{'s' if len(entries) != 1 else ''} ({parts}) on {pairs} "
            f"pair{'s' if pairs != 1 else ''}, last by {last.get('user', '?')} at {last.get('ts', '?')}")
