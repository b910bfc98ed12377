"""Pairs -> deduplicated train/val/test, split by source document, checked for train<->eval overlap.

Near duplicates: candidates come from MinHash buckets over character n-grams (bigrams for Chinese,
trigrams for Latin text), so the work stays near-linear; each candidate is confirmed with rapidfuzz's
normalized Levenshtein ratio against the threshold.
"""

from __future__ import annotations

import random
import unicodedata
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz import fuzz

from ..errors import DataError
from ..fsutil import atomic_write_jsonl
from ..review.journal import apply_review, fold, pair_id
from ..run_files import read_jsonl
from .prompts import is_cjk

ALPACA_KEYS = ("instruction", "input", "output")
SPLITS = ("train", "val", "test")


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(c for c in text if c.isalnum())


def pair_text(record: dict[str, Any]) -> str:
    return _norm(record["instruction"]) + "\x00" + _norm(record["output"])


def _shingles(text: str) -> set[str]:
    n = 2 if is_cjk(text) else 3
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


# MinHash with banding (LSH): 16 bands of 4 rows puts pairs with n-gram Jaccard >= 0.6 in a shared bucket
# with probability > 0.89. Fixed seeds and crc32 (not Python's salted hash) keep runs reproducible.
_BANDS, _ROWS = 16, 4
_RNG = np.random.default_rng(20240601)
_A = _RNG.integers(1, 2**63, _BANDS * _ROWS, dtype=np.uint64) | np.uint64(1)
_B = _RNG.integers(0, 2**63, _BANDS * _ROWS, dtype=np.uint64)


def _band_keys(text: str) -> list[bytes]:
    grams = np.fromiter((zlib.crc32(g.encode()) for g in _shingles(text)), dtype=np.uint64)
    with np.errstate(over="ignore"):  # multiply-add modulo 2**64 is the hash family
        signature = ((_A[:, None] * grams[None, :] + _B[:, None]) >> np.uint64(32)).min(axis=1)
    return [bytes([band]) + signature[band * _ROWS : (band + 1) * _ROWS].tobytes() for band in range(_BANDS)]


class NearIndex:
    """Finds a stored text whose rapidfuzz ratio to a query is >= threshold (MinHash LSH for candidates)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.texts: list[str] = []
        self.buckets: dict[bytes, list[int]] = defaultdict(list)

    def query(self, text: str, keys: list[bytes] | None = None) -> tuple[int, float] | None:
        best: tuple[int, float] | None = None
        seen: set[int] = set()
        for key in keys or _band_keys(text):
            for idx in self.buckets.get(key, ()):
                if idx in seen:
                    continue
                seen.add(idx)
                score = fuzz.ratio(text, self.texts[idx], score_cutoff=self.threshold * 100) / 100
                if score >= self.threshold and (best is None or score > best[1]):
                    best = (idx, score)
        return best

    def add(self, text: str, keys: list[bytes] | None = None) -> int:
        idx = len(self.texts)
        self.texts.append(text)
        for key in keys or _band_keys(text):
            self.buckets[key].append(idx)
        return idx

    def sketch(self, text: str) -> list[bytes]:
        """What query and add take, computed once per text."""
        return _band_keys(text)


def dedup(records: list[dict[str, Any]], threshold: float, index_cls: type = NearIndex
          ) -> tuple[list[dict[str, Any]], Counter]:
    """Keep the first of each exact or near-duplicate group (normalized question + answer). `index_cls`: another
    index with the same methods (benchmarks/dedup_library.py measures datasketch's this way)."""
    counts: Counter = Counter()
    exact: set[str] = set()
    index = index_cls(threshold)
    kept = []
    for record in records:
        text = pair_text(record)
        if text in exact:
            counts["exact"] += 1
            continue
        exact.add(text)
        keys = index.sketch(text)
        if threshold < 1 and index.query(text, keys) is not None:
            counts["near"] += 1
            continue
        index.add(text, keys)
        kept.append(record)
    return kept, counts


def _unit(record: dict[str, Any], by_section: bool) -> str:
    source = record.get("source") or {}
    file = source.get("file", "")
    path = source.get("heading_path") or []
    return f"{file}\x00" + "\x00".join(map(str, path)) if by_section and path else file


SPLIT_TOLERANCE = 0.05  # how far (in fraction points) an eval split may land from what was asked


def split_by_document(
    records: list[dict[str, Any]], val: float, test: float, seed: int, unit: str = "auto"
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Whole documents go to one split, so no document's wording leaks from train into eval. When whole documents
    cannot meet the fractions within SPLIT_TOLERANCE (few, uneven documents), whole sections (file and heading
    path) do instead; `unit` "document" or "section" forces one. Returns (splits, the unit used)."""
    if unit in ("auto", "document"):
        splits = _split(records, val, test, seed, by_section=False)
        if unit == "document" or _within(splits, val, test):
            return splits, "document"
    return _split(records, val, test, seed, by_section=True), "section"


def achieved_fractions(splits: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    total = sum(len(rows) for rows in splits.values()) or 1
    return {name: round(len(rows) / total, 3) for name, rows in splits.items()}


def _within(splits: dict[str, list[dict[str, Any]]], val: float, test: float) -> bool:
    got = achieved_fractions(splits)
    return abs(got["val"] - val) <= SPLIT_TOLERANCE and abs(got["test"] - test) <= SPLIT_TOLERANCE


def _split(records: list[dict[str, Any]], val: float, test: float, seed: int, *, by_section: bool
           ) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[_unit(record, by_section)].append(record)
    units = sorted(groups)
    random.Random(seed).shuffle(units)
    total = len(records)
    splits: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    cursor = 0
    for name, fraction in (("test", test), ("val", val)):
        if fraction <= 0:
            continue
        # Whole units until the split holds its share (at least one unit, as long as train keeps one); a unit that
        # would overshoot the share by more than it fills is left for train.
        while cursor < len(units) - 1 and len(splits[name]) < fraction * total:
            size = len(groups[units[cursor]])
            if splits[name] and len(splits[name]) + size - fraction * total > fraction * total - len(splits[name]):
                break
            splits[name].extend(groups[units[cursor]])
            cursor += 1
    for unit in units[cursor:]:
        splits["train"].extend(groups[unit])
    return splits


def check_contamination(
    train: list[dict[str, Any]], evals: dict[str, list[dict[str, Any]]], threshold: float, where: str | Path
) -> None:
    """Refuse (DataError naming both pairs) when an eval pair near-duplicates a train pair."""
    index = NearIndex(threshold)
    for record in train:
        index.add(pair_text(record))
    for split, records in evals.items():
        for i, record in enumerate(records):
            text = pair_text(record)
            hit = index.query(text)
            if hit is None:
                continue
            j, score = hit
            other = train[j]
            raise DataError(
                f"{split} pair {i + 1} {_describe(record)} near-duplicates train pair {j + 1} {_describe(other)}"
                f" (similarity {score:.2f} >= {threshold}); eval split not written",
                where=where,
                hint="drop one of the two source documents, or lower datagen.dedup_threshold so dedup removes it",
            )


def _describe(record: dict[str, Any]) -> str:
    question = " ".join(record["instruction"].split())
    question = question if len(question) <= 40 else question[:39] + "…"
    file = (record.get("source") or {}).get("file")
    return f"'{question}'" + (f" from {file}" if file else "")


@dataclass
class CleanReport:
    pairs_in: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    split_unit: str = "document"
    counts: dict[str, int] = field(default_factory=dict)
    fractions: dict[str, float] = field(default_factory=dict)
    documents: dict[str, int] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)  # what people's decisions (review/journal.jsonl) changed
    # The knowledge probe (knowledge.jsonl): questions kept, and those refused by reason.
    knowledge: dict[str, int] = field(default_factory=dict)


SPLIT_RECORD = "splits.jsonl"  # which pair went to which split, and why a pair went to none
KNOWLEDGE = "knowledge.jsonl"  # the knowledge probe: held out of every split, on passages train holds


PRETRAIN = "pretrain.jsonl"  # the trained chunks' raw text, for continued pre-training (method.pretrain)


def trained_chunk_ids(out_dir: Path) -> set[str]:
    """The chunks at least one of whose pairs is in the train split (splits.jsonl): the passages a run trains on."""
    path = Path(out_dir) / SPLIT_RECORD
    if not path.exists():
        return set()
    return {r["pair_id"].rsplit("#", 1)[0] for r in read_jsonl(path) if r.get("split") == "train"}


def knowledge_probe(probes: list[dict[str, Any]], train: list[dict[str, Any]], threshold: float,
                    train_questions: list[str] = ()) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The probe questions kept, and why each other one was refused: its passage is not one the training split
    holds (passage_not_trained: its document or section went to val or test), it repeats or near-duplicates a
    training question (near_train_question: datagen's own or a dataset file's, at the dedup threshold), or an
    earlier probe question (duplicate)."""
    trained = {(r.get("source") or {}).get("chunk_id") for r in train}
    index, exact = NearIndex(threshold), set()
    for question in [*(r["instruction"] for r in train), *train_questions]:
        text = _norm(question)
        if text not in exact:
            exact.add(text)
            index.add(text)
    kept, dropped, asked = [], {}, set()
    for probe in probes:
        pid, text = pair_id(probe), _norm(probe["instruction"])
        if (probe.get("source") or {}).get("chunk_id") not in trained:
            dropped[pid] = "passage_not_trained"
        elif text in exact or index.query(text) is not None:
            dropped[pid] = "near_train_question"
        elif text in asked:
            dropped[pid] = "duplicate"
        else:
            asked.add(text)
            kept.append(probe)
    return kept, dropped


def knowledge_rows(probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """knowledge.jsonl: each probe question with its reference answer and the passage it asks about."""
    return [{"id": pair_id(p), "question": p["instruction"], "answer": p["output"],
             "source": {k: v for k, v in (p.get("source") or {}).items() if k != "index"}} for p in probes]


def clean_and_split(
    records: list[dict[str, Any]], out_dir: Path, *, threshold: float, val: float, test: float, seed: int,
    unit: str = "auto", review: list[dict[str, Any]] | None = None, accepted_only: bool = False,
    probes: list[dict[str, Any]] = (), train_questions: list[str] = (),
) -> CleanReport:
    """Dedup, split by document (or section), apply people's review decisions, check contamination, then write
    train/val/test.jsonl (alpaca keys) and splits.jsonl.

    The split is made before the decisions apply, so a rejection or an edit never moves any other pair to
    another split: it only removes or rewrites that one pair where it already was."""
    kept, dups = dedup(records, threshold)
    splits, unit = split_by_document(kept, val, test, seed, unit)
    placed = {pid: name for name, rows in splits.items() for r in rows if (pid := pair_id(r))}
    dropped: dict[str, str] = {}
    if review or accepted_only:
        for name in SPLITS:
            splits[name], gone = apply_review(splits[name], review or [], accepted_only)
            dropped.update(gone)
    check_contamination(splits["train"], {s: splits[s] for s in ("val", "test")}, threshold, out_dir)
    probe_kept, probe_dropped = knowledge_probe(list(probes), splits["train"], threshold, list(train_questions))
    for split, rows in splits.items():
        _write_jsonl(out_dir / f"{split}.jsonl", [{k: r[k] for k in ALPACA_KEYS} for r in rows])
    _write_jsonl(out_dir / KNOWLEDGE, knowledge_rows(probe_kept))
    _write_jsonl(out_dir / SPLIT_RECORD, [
        {"pair_id": pid, "split": placed.get(pid),
         "dropped": dropped.get(pid) or (None if pid in placed else "duplicate")}
        for r in records if (pid := pair_id(r))] + [
        {"pair_id": pid, "split": None if pid in probe_dropped else "knowledge", "dropped": probe_dropped.get(pid),
         "probe": True}
        for r in probes if (pid := pair_id(r))])
    states, stale = fold(review or [], {pid: r for r in records if (pid := pair_id(r))})
    by_status = {status: sum(s.status == status for s in states.values()) for status in ("accepted", "edited", "rejected")}
    return CleanReport(
        pairs_in=len(records), duplicates={"exact": dups["exact"], "near": dups["near"]}, split_unit=unit,
        counts={s: len(rows) for s, rows in splits.items()}, fractions=achieved_fractions(splits),
        documents={s: len({_unit(r, False) for r in rows}) for s, rows in splits.items()},
        review={"decisions": len(review or []), "stale_decisions": stale, "accepted_only": accepted_only,
                **by_status, "dropped": len(dropped)},
        knowledge={"kept": len(probe_kept), **Counter(probe_dropped.values())},
    )


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    atomic_write_jsonl(path, rows)
