"""Helpers for the reliability tests. Import as `rel_helpers` (this folder is put on sys.path by conftest)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COAL_DOCS = REPO / "data" / "coal" / "docs"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_complete(datagen_dir: Path, chunk_ids: list[str]) -> list[dict]:
    """Every chunk ends done or reported failed; no record lost, none duplicated. Returns the pairs."""
    final = {entry["chunk_id"]: entry for entry in read_jsonl(datagen_dir / "journal.jsonl")}
    assert set(final) == set(chunk_ids), "a chunk neither done nor reported"
    pairs = read_jsonl(datagen_dir / "pairs.jsonl")
    keys = [(p["source"]["chunk_id"], p["source"]["index"]) for p in pairs]
    assert len(keys) == len(set(keys)), "duplicated records"
    per_chunk = Counter(k[0] for k in keys)
    for cid, entry in final.items():
        assert per_chunk.get(cid, 0) == (entry["pairs"] if entry["status"] == "done" else 0), "lost or orphaned records"
    return pairs


def coal_recipe(**datagen) -> dict:
    return {
        "name": "coal-rel", "domain": "coal",
        "extract": {"inputs": [str(COAL_DOCS)], "chunk_chars": 600, "overlap_chars": 60},
        "datagen": {"provider": "extractive", "prompts": "coal", **datagen},
    }
