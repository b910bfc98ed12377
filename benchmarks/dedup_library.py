"""Dedup and reply-shape checks: libraries (datasketch MinHash LSH, jsonschema) vs the hand-written code.

    python benchmarks/dedup_library.py [--corpus ../shared/corpora/coal] [--copies 10] [--pairs 62520] [--repeat 3]

Builds the x10 coal corpus in a temporary folder: every .txt regulation of the corpus (38 files) written
`copies` times (380 files). Copy 0 is the file as is; each later copy is the same regulation re-issued with
edits: per sentence, a 25% chance of losing one comma clause or having a few characters changed, a 10% chance of
being replaced by a sentence from another regulation. The offline extractive teacher (the coal prompt file,
pairs_per_chunk 10) turns the extracted chunks into pairs, the first `pairs` of which are kept (62,520 by
default). So the set holds exact duplicates, near duplicates and distinct pairs, as a re-extracted corpus would.

Then, in this one process and on the same records, it times:
  * dedup: domainft.datagen.clean.dedup (the hand-written MinHash LSH) vs the same loop on datasketch's MinHash +
    MinHashLSH (below), threshold 0.9 (the recipe default), and how far their decisions agree;
  * check_contamination's index over the deduplicated pairs split by document (the same two indexes);
  * reply-shape checks: domainft.datagen.prompts.schema_errors (hand-written) vs jsonschema's Draft 2020-12
    validator (below), once per pair on the prompt's item schema (what check_pairs does) and once per reply on the
    whole schema;
and prints both times and their ratio (old/new: above 1 the library is faster). Needs the two libraries:
pip install -e '.[bench]'. The measured figures and the decision are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
import unicodedata
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from datasketch import MinHash, MinHashLSH
from jsonschema import Draft202012Validator
from rapidfuzz import fuzz

from domainft.datagen import clean
from domainft.datagen.clean import _shingles, pair_text, split_by_document
from domainft.datagen.prompts import load_prompts, schema_errors
from domainft.datagen.teacher import extractive_pairs
from domainft.extract.extractor import extract_inputs

# ------------------------------------------------------------------ the library versions (not adopted)
# What replaced clean.py's MinHash LSH and prompts.py's schema_errors for this measurement; kept here so the
# comparison can be rerun. Same banding (16 bands x 4 rows, fixed seed, crc32 of the n-grams), same rapidfuzz
# confirmation, same one-line path-naming messages.

_BANDS, _ROWS = 16, 4
_SEED = 20240601
_PERMUTATIONS = MinHash(num_perm=_BANDS * _ROWS, seed=_SEED).permutations


def _sketch(text: str) -> MinHash:
    sketch = MinHash(num_perm=_BANDS * _ROWS, seed=_SEED, hashfunc=zlib.crc32, permutations=_PERMUTATIONS,
                     scheme="affine32")
    sketch.update_batch([gram.encode() for gram in _shingles(text)])  # one numpy pass, not update() per n-gram
    return sketch


class LibNearIndex:
    def __init__(self, threshold: float):
        self.threshold = threshold
        self.texts: list[str] = []
        self.lsh = MinHashLSH(num_perm=_BANDS * _ROWS, params=(_BANDS, _ROWS))

    def query(self, text: str, sketch: MinHash | None = None) -> tuple[int, float] | None:
        best: tuple[int, float] | None = None
        for idx in sorted(self.lsh.query(_sketch(text) if sketch is None else sketch)):
            score = fuzz.ratio(text, self.texts[idx], score_cutoff=self.threshold * 100) / 100
            if score >= self.threshold and (best is None or score > best[1]):
                best = (idx, score)
        return best

    def add(self, text: str, sketch: MinHash | None = None) -> int:
        idx = len(self.texts)
        self.texts.append(text)
        self.lsh.insert(idx, _sketch(text) if sketch is None else sketch, check_duplication=False)
        return idx

    def sketch(self, text: str) -> MinHash:
        return _sketch(text)


def lib_dedup(records: list[dict[str, Any]], threshold: float) -> tuple[list[dict[str, Any]], Counter]:
    return clean.dedup(records, threshold, index_cls=LibNearIndex)


_VALIDATORS: dict[str, Draft202012Validator] = {}
_WORDS = {"minLength": "shorter than {}", "maxLength": "longer than {}", "minItems": "has fewer than {} items",
          "maxItems": "has more than {} items", "enum": "not in enum", "const": "is not {}"}


def _describe_error(error, root: str) -> list[str]:
    where = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    kind, limit = error.validator, error.validator_value
    if kind == "required":
        return [f"{where}.{key} missing" for key in limit if key not in error.instance]
    if kind == "type":
        return [f"{where} is not {' or '.join(limit) if isinstance(limit, list) else limit}"]
    if kind in _WORDS:
        return [f"{where} {_WORDS[kind].format(limit)}"]
    return [f"{where} fails {kind} {json.dumps(limit, ensure_ascii=False)[:60]}"]


def lib_schema_errors(value: Any, schema: dict[str, Any], root: str = "reply") -> list[str]:
    """jsonschema (Draft 2020-12) with one line per failure, e.g. "reply.pairs[0].answer missing"."""
    key = json.dumps(schema, sort_keys=True)
    if (validator := _VALIDATORS.get(key)) is None:
        validator = _VALIDATORS[key] = Draft202012Validator(schema)
    errors: dict[str, None] = {}
    for error in validator.iter_errors(value):
        errors.update(dict.fromkeys(_describe_error(error, root)))
    return list(errors)


# ------------------------------------------------------------------ the x10 corpus

_SENTENCE = re.compile(r"(?<=[。；！？])")
_EDIT_CHARS = "的和或及应必须可以不得按照规定进行设置符合要求"


def _edit(sentence: str, rng: random.Random, pool: list[str]) -> str:
    roll = rng.random()
    if roll < 0.10 and pool:
        return rng.choice(pool)
    if roll < 0.35 and len(sentence) > 8:
        clauses = sentence.split("，")
        if len(clauses) > 2:
            del clauses[rng.randrange(1, len(clauses))]
            return "，".join(clauses)
        chars = list(sentence)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(2, len(chars))] = rng.choice(_EDIT_CHARS)
        return "".join(chars)
    return sentence


def build_corpus(source: Path, out: Path, copies: int, seed: int = 7) -> int:
    files = sorted(p for p in source.glob("*.txt") if not p.name.upper().startswith(("README", "LICENSE")))
    texts = {p: unicodedata.normalize("NFC", p.read_text(encoding="utf-8", errors="replace")) for p in files}
    pool = [s for text in texts.values() for s in _SENTENCE.split(text) if 12 <= len(s.strip()) <= 80 and "\n" not in s]
    for copy in range(copies):
        for path, text in texts.items():
            rng = random.Random(f"{seed}-{copy}-{path.name}")
            if copy:
                lines = text.split("\n")
                # The first line (title) and each line's first 12 characters (article / clause numbers) stay.
                text = "\n".join(
                    line[:12] + "".join(_edit(s, rng, pool) for s in _SENTENCE.split(line[12:])) for line in lines
                )
            (out / f"{path.stem}-{copy}.txt").write_text(text, encoding="utf-8")
    return len(files) * copies


def corpus_records(folder: Path, limit: int) -> list[dict[str, Any]]:
    spec = load_prompts("coal")
    records = []
    for chunk in extract_inputs([folder]).chunks:
        for pair in extractive_pairs(chunk, spec, spec.pairs_per_chunk):
            records.append({"instruction": pair["question"], "input": "", "output": pair["answer"],
                            "source": {"file": chunk.file, "heading_path": chunk.heading_path}})
    # Interleave the copies (a re-extracted corpus does not arrive copy by copy), deterministically.
    random.Random(42).shuffle(records)
    return records[:limit]


# ------------------------------------------------------------------ timing


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def contamination_seconds(index_cls, train, evals, threshold) -> tuple[float, str]:
    """check_contamination's loop with the given index class; returns (seconds, first hit or 'none')."""
    started = time.perf_counter()
    index = index_cls(threshold)
    for record in train:
        index.add(pair_text(record))
    first = "none"
    hits = 0
    for records in evals.values():
        for record in records:
            if index.query(pair_text(record)) is not None:
                hits += 1
    if hits:
        first = f"{hits} eval pairs near-duplicate train"
    return time.perf_counter() - started, first


def line(name: str, old: float, new: float) -> None:
    print(f"{name:<44} hand-written {old:8.2f} s   library {new:8.2f} s   old/new {old / new:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpora" / "coal")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=62520)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--repeat", type=int, default=3, help="dedup runs of each, alternated")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        n_files = build_corpus(args.corpus, Path(tmp), args.copies)
        records = corpus_records(Path(tmp), args.pairs)
    print(f"corpus: {n_files} files, {len(records)} pairs (x{args.copies} coal, threshold {args.threshold})")

    old_runs, new_runs = [], []
    for _ in range(args.repeat):  # alternated, best of `repeat` each
        old_s, (old_kept, old_counts) = timed(clean.dedup, records, args.threshold)
        new_s, (new_kept, new_counts) = timed(lib_dedup, records, args.threshold)
        old_runs.append(old_s)
        new_runs.append(new_s)
    print("  dedup runs (s): hand-written " + " ".join(f"{t:.2f}" for t in old_runs)
          + ", library " + " ".join(f"{t:.2f}" for t in new_runs))
    line(f"dedup (best of {args.repeat})", min(old_runs), min(new_runs))
    old_ids, new_ids = {id(r) for r in old_kept}, {id(r) for r in new_kept}
    print(f"  kept: hand-written {len(old_kept)} {dict(old_counts)}, library {len(new_kept)} {dict(new_counts)};"
          f" decisions differ on {len(old_ids ^ new_ids)} of {len(records)} pairs")

    splits, _ = split_by_document(old_kept, 0.1, 0.1, 42)
    evals = {s: splits[s] for s in ("val", "test")}
    old_c, old_hit = contamination_seconds(clean.NearIndex, splits["train"], evals, args.threshold)
    new_c, new_hit = contamination_seconds(LibNearIndex, splits["train"], evals, args.threshold)
    line("contamination check (after dedup)", old_c, new_c)
    print(f"  hits: hand-written {old_hit}, library {new_hit}")

    spec = load_prompts("coal")
    items = [{"question": r["instruction"], "answer": r["output"]} for r in records]
    item_schema = spec.item_schema
    old_i, old_bad = timed(lambda: sum(bool(schema_errors(i, item_schema)) for i in items))
    new_i, new_bad = timed(lambda: sum(bool(lib_schema_errors(i, item_schema)) for i in items))
    line(f"schema, per pair ({len(items)} pairs)", old_i, new_i)
    replies = [{"pairs": items[i : i + 10]} for i in range(0, len(items), 10)]
    old_r, old_rbad = timed(lambda: sum(bool(schema_errors(r, spec.schema_)) for r in replies))
    new_r, new_rbad = timed(lambda: sum(bool(lib_schema_errors(r, spec.schema_)) for r in replies))
    line(f"schema, per reply ({len(replies)} replies)", old_r, new_r)
    # Broken replies (not timed): a missing answer, a short question, a number for an answer, an empty list.
    broken = [{"pairs": [{"question": "问"}]}, {"pairs": [{"question": "问题", "answer": "答"}]},
              {"pairs": [{"question": "问题是什么", "answer": 3}]}, {"pairs": []}, []]
    agree = sum(bool(schema_errors(r, spec.schema_)) == bool(lib_schema_errors(r, spec.schema_)) for r in broken)
    print(f"  failing: per pair {old_bad} vs {new_bad}, per reply {old_rbad} vs {new_rbad};"
          f" {agree}/{len(broken)} broken replies refused by both")


if __name__ == "__main__":
    main()
