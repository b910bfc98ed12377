"""What the review page shows: every generated pair beside its chunk, the judge's rating, its split and the
decisions people made, read fresh from the run folder (another tab or process may have decided meanwhile)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..extract import Chunk, read_chunks
from ..fsutil import atomic_write_jsonl
from ..plan import Plan
from ..run_files import read_jsonl
from .journal import Journal, PairState, fold, pair_id

STATUSES = ("pending", "accepted", "edited", "rejected")
JUDGE_STATUSES = ("kept", "set_aside", "unrated")
SPLIT_CHOICES = ("train", "val", "test", "none")
FILTER_KEYS = ("status", "judge", "doc", "split", "min_score", "max_score")
# The answer's supporting span: the longest stretch of the answer found verbatim in the chunk, when it is at
# least this long (shorter matches are common words, not support).
MIN_SUPPORT_CHARS = 12


@dataclass
class PairView:
    id: str
    order: int
    record: dict[str, Any]  # as datagen generated it
    state: PairState | None
    chunk: Chunk | None
    curation: dict[str, Any] | None
    split: str | None  # train | val | test, None when in none (or datagen has not split yet)
    dropped: str | None  # why it is in no split

    @property
    def status(self) -> str:
        return self.state.status if self.state else "pending"

    @property
    def current(self) -> dict[str, Any]:
        """The pair as training sees it (an edit in effect)."""
        return self.state.apply_to(self.record) if self.state else self.record

    @property
    def judge(self) -> str:
        return (self.curation or {}).get("status") or "unrated"

    @property
    def score(self) -> float | None:
        value = (self.curation or {}).get("score")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def file(self) -> str:
        return (self.record.get("source") or {}).get("file", "")

    @property
    def heading_path(self) -> list[str]:
        return list((self.record.get("source") or {}).get("heading_path") or [])

    def support(self) -> tuple[str, str, str]:
        """The chunk text cut as (before, the answer's supporting span, after); the span is empty when the
        answer is not in the chunk."""
        text = self.chunk.text if self.chunk else ""
        answer = self.current["output"].strip()
        if not text or not answer:
            return text, "", ""
        start = text.find(answer)
        if start >= 0:
            return text[:start], answer, text[start + len(answer):]
        match = difflib.SequenceMatcher(None, text, answer, autojunk=False).find_longest_match()
        if match.size < min(MIN_SUPPORT_CHARS, len(answer)):
            return text, "", ""
        return text[:match.a], text[match.a:match.a + match.size], text[match.a + match.size:]


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """JSONL rows; a torn last line (a writer still at work, or killed) is skipped."""
    return read_jsonl(path, missing_ok=True, skip_bad=True)


class RunData:
    """The run folder's pairs, chunks, ratings and splits, re-read only when a file changed."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.journal = Journal(plan.review_journal)
        self.pairs_path = plan.datagen_dir / "pairs.jsonl"
        self._cache: dict[Path, tuple[tuple[int, int], Any]] = {}

    def _load(self, path: Path, read) -> Any:
        try:
            stat = path.stat()
            key = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            key = (-1, -1)
        cached = self._cache.get(path)
        if cached is None or cached[0] != key:
            cached = (key, read(path))
            self._cache[path] = cached
        return cached[1]

    def check(self) -> None:
        if not self.pairs_path.exists():
            raise DataError("no generated pairs to review yet; run `domainft datagen RECIPE` first",
                            where=self.pairs_path)

    def raw_pairs(self) -> dict[str, dict[str, Any]]:
        """pair id -> the pair as generated, in chunk order then pair order (as datagen splits them)."""
        chunks = self.chunks()
        order = {cid: i for i, cid in enumerate(chunks)}
        rows = [r for r in self._load(self.pairs_path, _read_rows) if pair_id(r)]
        rows.sort(key=lambda r: (order.get(r["source"]["chunk_id"], len(order)), r["source"]["index"]))
        return {pair_id(r): r for r in rows}

    def chunks(self) -> dict[str, Chunk]:
        path = self.plan.extract_dir / "chunks.jsonl"
        return self._load(path, lambda p: {c.id: c for c in read_chunks(p)} if p.exists() else {})

    def views(self) -> list[PairView]:
        pairs = self.raw_pairs()
        chunks = self.chunks()
        datagen = self.plan.datagen_dir
        ratings = {r.get("pair_id"): r for r in self._load(datagen / "curation.jsonl", _read_rows)}
        placed = {r.get("pair_id"): r for r in self._load(datagen / "splits.jsonl", _read_rows)}
        states, _ = fold(self.journal.read(), pairs)
        views = []
        for order, (pid, record) in enumerate(pairs.items()):
            place = placed.get(pid) or {}
            rating = ratings.get(pid)
            dropped = place.get("dropped")
            if rating and rating.get("status") == "set_aside":
                dropped = "set aside by the judge"
            views.append(PairView(pid, order, record, states.get(pid), chunks.get(record["source"]["chunk_id"]),
                                  rating, place.get("split"), dropped))
        return views


def parse_filters(query: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The filters a query asks for (unknown values dropped) and a note per value that was not understood."""
    filters, notes = {}, []
    choices = {"status": STATUSES, "judge": JUDGE_STATUSES, "split": SPLIT_CHOICES}
    for key in FILTER_KEYS:
        value = (query.get(key) or "").strip()
        if not value:
            continue
        if key in choices and value not in choices[key]:
            notes.append(f"{key}: '{value}' is not one of {', '.join(choices[key])}")
            continue
        if key in ("min_score", "max_score"):
            try:
                float(value)
            except ValueError:
                notes.append(f"{key}: '{value}' is not a number")
                continue
        filters[key] = value
    return filters, notes


def matches(view: PairView, filters: dict[str, str]) -> bool:
    if "status" in filters and view.status != filters["status"]:
        return False
    if "judge" in filters and view.judge != filters["judge"]:
        return False
    if "doc" in filters and view.file != filters["doc"]:
        return False
    if "split" in filters and (view.split or "none") != filters["split"]:
        return False
    for key, ok in (("min_score", lambda s, v: s >= v), ("max_score", lambda s, v: s <= v)):
        if key in filters and (view.score is None or not ok(view.score, float(filters[key]))):
            return False
    return True


def export_reviewed(plan: Plan, dest: Path) -> int:
    """Write the pairs a person accepted or edited (edited ones as edited), with their source, split and the
    decision, to `dest` (JSONL, alpaca keys first). Returns how many."""
    data = RunData(plan)
    data.check()
    rows = []
    for view in data.views():
        if view.status not in ("accepted", "edited"):
            continue
        current, last = view.current, view.state.last
        rows.append({"instruction": current["instruction"], "input": current.get("input", ""),
                     "output": current["output"], "id": view.id, "source": view.record.get("source"),
                     "split": view.split, "review": {"status": view.status, "user": last.get("user"),
                                                     "ts": last.get("ts"), "hash": last.get("after_hash")}})
    atomic_write_jsonl(dest, rows)
    return len(rows)
