"""The datagen run: chunks -> teacher -> pairs.jsonl, resumable after any interruption, then clean + split.

Crash safety: each pair is appended to pairs.jsonl and fsync'd, then the chunk's line goes to
journal.jsonl. On start, pairs of chunks the journal does not mark done (a run killed between the two
writes, a torn last line) are dropped, so a rerun after `kill -9` neither duplicates nor loses a record.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, RecipeError, TeacherError
from ..extract import Chunk, read_chunks
from ..fsutil import atomic_write, atomic_write_jsonl
from ..llm.batch import progress_line, run_pool
from ..llm.providers import Transient
from ..llm.replies import BadReply, parse_json_reply
from ..llm.retry import BACKOFF_INITIAL_S, BACKOFF_MAX_S, UNREACHABLE_S  # module globals: tests shorten them
from ..llm.retry import RateLimiter, Reachability, attempts, backoff
from ..plan import Plan
from ..recipe import DatagenConfig
from ..review.journal import Journal, fold, pair_id
from ..run_files import AppendJournal
from .clean import PRETRAIN, clean_and_split, trained_chunk_ids
from .curate import curate_pairs, load_curate_rubric
from .prompts import PromptSet, PromptSpec, _norm, check_pairs, load_prompt_set
from .teacher import Teacher, make_teacher


PROBES = "probes.jsonl"  # the knowledge probe's questions as the teacher gave them (append-only, like pairs.jsonl)


@dataclass
class DatagenSummary:
    chunks: int = 0
    done: int = 0
    failed: int = 0
    pairs: int = 0
    new_pairs: int = 0
    probes: int = 0  # knowledge-probe questions asked and kept from the teacher (before the split's checks)
    resumed_chunks: int = 0  # already done before this run
    rejected: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    tokens: int | None = None
    seconds: float = 0.0
    failed_chunks: list[dict[str, str]] = field(default_factory=list)
    clean: dict[str, Any] = field(default_factory=dict)
    curate: dict[str, Any] | None = None  # the judge's ratings (datagen.curate); None when off
    provider: str = ""
    model: str | None = None
    restarted: str | None = None  # why earlier output was set aside

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)


class Store:
    """pairs.jsonl + probes.jsonl (the knowledge probe's questions) + journal.jsonl in the datagen folder,
    append-only, each record fsync'd (run_files.AppendJournal)."""

    def __init__(self, out: Path):
        self.pairs_path, self.journal_path = out / "pairs.jsonl", out / "journal.jsonl"
        self.probes_path = out / PROBES
        journal = AppendJournal(self.journal_path)
        status: dict[str, str] = {}
        for entry in journal.records():
            status[entry["chunk_id"]] = entry["status"]
        self.done = {cid for cid, s in status.items() if s == "done"}
        self.pair_count = self._recover(self.pairs_path)
        self._recover(self.probes_path)
        journal.repair()
        self.pairs, self.probes, self.journal = AppendJournal(self.pairs_path), AppendJournal(self.probes_path), journal
        for file in (self.pairs, self.probes, self.journal):
            file.open()

    def _recover(self, path: Path) -> int:
        file = AppendJournal(path)
        file.repair()  # a torn last line
        kept, seen, dropped = [], set(), False
        for _, line in file.committed():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            source = (record.get("source") if isinstance(record, dict) else None) or {}
            key = (source.get("chunk_id"), source.get("index"))
            if record is None or key[0] not in self.done or key in seen:
                dropped = True  # a broken line, or pairs of a chunk that never reached the journal
                continue
            seen.add(key)
            kept.append(line + b"\n")
        if dropped:
            atomic_write(path, b"".join(kept))
        return len(kept)

    def record(self, chunk: Chunk, pairs: list[dict[str, str]], rejected: Counter, tokens: int | None,
               probes: list[dict[str, str]] = ()) -> None:
        """The chunk's pairs into pairs.jsonl, its knowledge-probe questions into probes.jsonl (numbered after the
        pairs, so every question of a chunk has its own id), then the chunk's line in the journal."""
        for index, pair in enumerate([*pairs, *probes]):
            row = {"instruction": pair["question"], "input": "", "output": pair["answer"],
                   "source": {"file": chunk.file, "heading_path": chunk.heading_path, "chunk_id": chunk.id, "index": index}}
            (self.pairs if index < len(pairs) else self.probes).append(row)
        self._journal({"chunk_id": chunk.id, "status": "done", "pairs": len(pairs), "probes": len(probes),
                       "rejected": dict(rejected), "tokens": tokens})
        self.done.add(chunk.id)
        self.pair_count += len(pairs)

    def fail(self, chunk: Chunk, reason: str) -> None:
        self._journal({"chunk_id": chunk.id, "status": "failed", "reason": reason})

    def _journal(self, entry: dict[str, Any]) -> None:
        self.journal.append(entry)

    def close(self) -> None:
        for file in (self.pairs, self.probes, self.journal):
            file.close()


def pairs_for_chunks(chunks: list[Chunk], per_document: int | None, per_chunk: int) -> dict[str, int]:
    """How many pairs to ask for per chunk: `per_chunk` each, or `per_document` spread over a document's chunks in
    proportion to their length (largest remainders), so a document gets exactly that many; a chunk whose share
    rounds to none gets 0 (it is not asked)."""
    if per_document is None:
        return {c.id: per_chunk for c in chunks}
    by_file: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_file.setdefault(chunk.file, []).append(chunk)
    counts: dict[str, int] = {}
    for doc in by_file.values():
        total = sum(len(c.text) for c in doc) or 1
        shares = [per_document * len(c.text) / total for c in doc]
        floors = [int(x) for x in shares]
        left = per_document - sum(floors)
        for i in sorted(range(len(doc)), key=lambda i: shares[i] - floors[i], reverse=True)[:left]:
            floors[i] += 1
        counts.update({c.id: n for c, n in zip(doc, floors)})
    return counts


def asks_for_chunks(chunks: list[Chunk], cfg: DatagenConfig, spec: PromptSpec | PromptSet) -> dict[str, tuple[int, int]]:
    """(min, max) pairs to ask of each chunk that is asked at all: the recipe's pairs_per_document range (or
    count) spread over each document's chunks, else pairs_per_chunk (the recipe's, else the prompt file's)."""
    per_chunk = cfg.pairs_per_chunk or spec.pairs_per_chunk
    document = cfg.document_pairs()
    most = pairs_for_chunks(chunks, document and document[1], per_chunk)
    least = pairs_for_chunks(chunks, document and document[0], per_chunk)
    return {cid: (min(max(1, least[cid]), n), n) for cid, n in most.items() if n > 0}


def preferred_first(chunks: list[Chunk], spec: PromptSpec | PromptSet) -> list[Chunk]:
    """Chunks holding one of the prompt file's `prefer` words first (in their order), then the rest: what
    datagen.max_chunks keeps."""
    return sorted(chunks, key=lambda c: not spec.of(c).prefers(c.text))


def probes_per_chunk(cfg: DatagenConfig, spec: PromptSpec | PromptSet) -> int:
    """Knowledge-probe questions to ask per chunk: the recipe's count, else the prompt file's."""
    return spec.probe_per_chunk if cfg.probe_per_chunk is None else cfg.probe_per_chunk


def _fingerprint(cfg: DatagenConfig, spec: PromptSpec | PromptSet, per_chunk: int) -> str:
    """What decides a chunk's pairs: a change means earlier pairs no longer match the recipe (the recipe's
    temperature is in the spec)."""
    counts = ["per_document", cfg.pairs_per_document] if cfg.pairs_per_document else per_chunk
    key = [cfg.provider, cfg.model, cfg.base_url, spec.text_hash(), counts]
    if probes_per_chunk(cfg, spec):  # runs made before the probe keep their fingerprint when it is off
        key.append(["probe", probes_per_chunk(cfg, spec)])
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def _set_aside_if_stale(out: Path, fingerprint: str) -> str | None:
    state = out / "state.json"
    previous = json.loads(state.read_text())["fingerprint"] if state.exists() else None
    reason = None
    if previous and previous != fingerprint and (out / "journal.jsonl").exists():
        stale = out / f"stale-{time.strftime('%Y%m%d-%H%M%S')}"
        stale.mkdir()
        for name in ("pairs.jsonl", PROBES, "journal.jsonl", "summary.json"):
            if (out / name).exists():
                os.replace(out / name, stale / name)
        reason = f"provider, model or prompts changed: earlier output moved to {stale.name}/"
    atomic_write(state, json.dumps({"fingerprint": fingerprint}) + "\n")
    return reason


class _Run:
    def __init__(self, cfg: DatagenConfig, spec: PromptSet, n_pairs: dict[str, tuple[int, int]], teacher: Teacher,
                 store: Store):
        self.cfg, self.spec, self.n_pairs, self.teacher, self.store = cfg, spec, n_pairs, teacher, store
        self.limiter = RateLimiter(cfg.rate_limit_per_s)
        self.rejected: Counter = Counter()
        self.errors: Counter = Counter()
        self.retries = 0
        self.tokens: int | None = None
        self.failed: list[dict[str, str]] = []
        self.new_pairs = 0
        self.fatal: TeacherError | None = None
        self.n_probe = probes_per_chunk(cfg, spec)
        self.probes = 0
        # Read here, not at import: tests shorten them on this module.
        self.wait = backoff(BACKOFF_INITIAL_S, BACKOFF_MAX_S)
        self.reachability = Reachability(UNREACHABLE_S, "teacher", "datagen.base_url")

    def _attempts(self):
        return attempts(self.cfg.max_retries, self.wait, self._count_retry)

    async def one(self, chunk: Chunk) -> None:
        try:
            async for attempt in self._attempts():
                with attempt:
                    pairs, rejected, tokens = await self._attempt(chunk)
        except Transient as exc:
            return self._fail(chunk, f"{exc.kind} after {self.cfg.max_retries + 1} attempts")
        except BadReply as exc:
            return self._fail(chunk, f"{exc.reason} after {self.cfg.max_retries + 1} attempts")
        # The knowledge probe, asked once the pairs are in: a probe the teacher cannot give costs the chunk its
        # probe questions, never its pairs.
        probes: list[dict[str, str]] = []
        if self.n_probe and pairs:
            try:
                async for attempt in self._attempts():
                    with attempt:
                        probes, rejected_probes = await self._probe(chunk, pairs)
                rejected.update({f"probe_{reason}": n for reason, n in rejected_probes.items()})
            except (Transient, BadReply):
                rejected["probe_failed"] += 1
        self.rejected.update(rejected)
        self.store.record(chunk, pairs, rejected, tokens, probes)
        self.new_pairs += len(pairs)
        self.probes += len(probes)

    async def _attempt(self, chunk: Chunk) -> tuple[list[dict[str, str]], Counter, int | None]:
        await self.limiter.acquire()
        with self._watching():
            least, most = self.n_pairs[chunk.id]
            reply = await self.teacher.complete(chunk, self.spec.of(chunk), most, least)
            if reply.tokens is not None:  # spent even when the reply is then rejected
                self.tokens = (self.tokens or 0) + reply.tokens
            raw = reply.pairs if reply.pairs is not None else parse_json_reply(reply.text or "")
            pairs, rejected = check_pairs(raw, self.spec.of(chunk), chunk, most)
        return pairs, rejected, reply.tokens

    def _watching(self):
        target = self.teacher.url or str(self.cfg.model)
        return self.reachability.watching(target, self.errors, self.rejected)

    async def _probe(self, chunk: Chunk, pairs: list[dict[str, str]]) -> tuple[list[dict[str, str]], Counter]:
        """The knowledge probe's questions on a chunk, checked like pairs; one that repeats a question of the chunk's
        pairs is rejected here (near-duplicates of any training question are refused at the split)."""
        await self.limiter.acquire()
        with self._watching():
            reply = await self.teacher.probe(chunk, self.spec.of(chunk), self.n_probe, [p["question"] for p in pairs])
            if reply.tokens is not None:
                self.tokens = (self.tokens or 0) + reply.tokens
            raw = reply.pairs if reply.pairs is not None else parse_json_reply(reply.text or "")
            probes, rejected = check_pairs(raw, self.spec.of(chunk), chunk, self.n_probe)
        asked = {_norm(p["question"]) for p in pairs}
        kept = [p for p in probes if _norm(p["question"]) not in asked]
        if len(kept) < len(probes):
            rejected["repeats_a_pair"] += len(probes) - len(kept)
        return kept, rejected

    def _count_retry(self, state) -> None:
        self.retries += 1

    def _fail(self, chunk: Chunk, reason: str) -> None:
        self.store.fail(chunk, reason)
        self.failed.append({"chunk_id": chunk.id, "file": chunk.file, "reason": reason})

    async def run(self, todo: list[Chunk], on_progress) -> None:
        async def one(chunk: Chunk) -> None:
            await self.one(chunk)
            on_progress()

        try:
            await run_pool(todo, min(self.cfg.concurrency, len(todo)) or 1, one)
        except TeacherError as exc:
            self.fatal = exc

    def progress_fields(self, done: int, seconds: float) -> dict[str, Any]:
        return {"pairs": self.new_pairs, "rate": self.new_pairs / seconds,
                "errors": sum(self.errors.values()) + len(self.failed)}


def run_datagen(plan: Plan, *, progress: bool = True, console=None) -> DatagenSummary:
    """Generate pairs for plan.extract_dir/chunks.jsonl into plan.datagen_dir, then clean and split.

    Writes pairs.jsonl, journal.jsonl, summary.json, train/val/test.jsonl. Resumes a previous run."""
    cfg = plan.recipe.datagen
    if cfg is None:
        raise RecipeError("the recipe has no datagen section", where="datagen")
    specs = load_prompt_set(plan.recipe)
    if cfg.temperature is not None:
        specs = {lang: s.model_copy(update={"temperature": cfg.temperature}) for lang, s in specs.items()}
    if cfg.curate is not None:
        load_curate_rubric(cfg.curate, plan.recipe.base_dir)
    chunks = read_chunks(plan.extract_dir / "chunks.jsonl")
    spec = PromptSet(specs, chunks)  # a language family: each document asked in its own language
    n_pairs = asks_for_chunks(chunks, cfg, spec)
    chunks = preferred_first([c for c in chunks if c.id in n_pairs], spec)
    if cfg.max_chunks:
        chunks = chunks[: cfg.max_chunks]
    if not chunks:
        raise DataError("no chunks to generate from", where=plan.extract_dir / "chunks.jsonl")
    out = plan.datagen_dir
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError("another datagen run is writing to this folder", where=out) from None
        return _run_locked(plan, cfg, spec, n_pairs, chunks, out, progress, console)


def _run_locked(plan, cfg, spec, n_pairs, chunks, out, progress, console) -> DatagenSummary:
    started = time.monotonic()
    summary = DatagenSummary(chunks=len(chunks), provider=cfg.provider, model=cfg.model)
    summary.restarted = _set_aside_if_stale(out, _fingerprint(cfg, spec, cfg.pairs_per_chunk or spec.pairs_per_chunk))
    store = Store(out)
    summary.resumed_chunks = sum(c.id in store.done for c in chunks)
    todo = [c for c in chunks if c.id not in store.done]
    teacher = make_teacher(cfg)
    run = _Run(cfg, spec, n_pairs, teacher, store)
    try:
        asyncio.run(_generate(run, teacher, todo, progress, console))
    finally:
        store.close()
    summary.done = sum(c.id in store.done for c in chunks)
    summary.failed = len(run.failed)
    summary.failed_chunks = run.failed
    summary.new_pairs = run.new_pairs
    summary.probes = run.probes
    summary.rejected = dict(run.rejected)
    summary.errors = dict(run.errors)
    summary.retries = run.retries
    summary.tokens = run.tokens
    set_aside: set[str] = set()
    if run.fatal is None and cfg.curate is not None:
        try:
            set_aside, summary.curate = _curate(plan, cfg, chunks, out, progress, console)
        except TeacherError as exc:  # the judge is gone: the pairs are kept, summary.json says so
            run.fatal = exc
    if run.fatal is None:
        summary.clean = _clean(plan, cfg, chunks, out, set_aside)
    summary.pairs = store.pair_count
    summary.seconds = round(time.monotonic() - started, 2)
    _write_atomic(out / "summary.json", summary.to_json() + "\n")
    if run.fatal is not None:
        raise run.fatal
    return summary


async def _generate(run: _Run, teacher: Teacher, todo: list[Chunk], progress: bool, console) -> None:
    try:
        if not todo:
            return
        await teacher.check()
        fields = "{task.fields[pairs]} pairs · {task.fields[rate]:.1f} pairs/s · {task.fields[errors]} errors"
        with progress_line("datagen", fields, len(todo), run.progress_fields, show=progress, console=console) as tick:
            await run.run(todo, tick)
    finally:
        await teacher.aclose()


def _pairs_in_order(chunks: list[Chunk], out: Path, *, probes: bool = False) -> list[dict[str, Any]]:
    """The chunks' pairs (with `probes`, their knowledge-probe questions instead) in chunk order, then pair order:
    the splits do not depend on which worker finished first."""
    order = {c.id: i for i, c in enumerate(chunks)}
    records = [r for r in AppendJournal(out / (PROBES if probes else "pairs.jsonl")).records() if r["source"]["chunk_id"] in order]
    records.sort(key=lambda r: (order[r["source"]["chunk_id"]], r["source"]["index"]))
    return records


def _curate(plan: Plan, cfg: DatagenConfig, chunks: list[Chunk], out: Path, progress: bool,
            console) -> tuple[set[str], dict[str, Any]]:
    """The judge rates every pair before dedup and split; returns the ids set aside (datagen/curate.py)."""
    return curate_pairs(_pairs_in_order(chunks, out), {c.id: c for c in chunks}, cfg.curate, out,
                        base_dir=plan.recipe.base_dir, progress=progress, console=console)


def _clean(plan: Plan, cfg: DatagenConfig, chunks: list[Chunk], out: Path,
           set_aside: set[str] = frozenset()) -> dict[str, Any]:
    review = Journal(plan.review_journal).read()
    records = _pairs_in_order(chunks, out)
    restored = overridden_by_review(set_aside, records, review)
    records = [r for r in records if pair_id(r) not in set_aside - restored]  # set aside by curation: not trained on
    report = clean_and_split(
        records, out, threshold=cfg.dedup_threshold, val=cfg.split.val, test=cfg.split.test, seed=cfg.split.seed,
        unit=cfg.split.unit, review=review, accepted_only=plan.recipe.review.accepted_only,
        probes=_pairs_in_order(chunks, out, probes=True), train_questions=_dataset_questions(plan),
    )
    trained = trained_chunk_ids(out)
    # Continued pre-training reads the raw text of exactly the passages SFT trains on: never a held-out one.
    atomic_write_jsonl(out / PRETRAIN, [{"text": c.text} for c in chunks if c.id in trained])
    return {**asdict(report), "restored_from_set_aside": len(restored)}


def _dataset_questions(plan: Plan) -> list[str]:
    """The questions of the recipe's own training files (dataset.files): a probe question must not repeat them."""
    column = plan.recipe.dataset.column_map().get("prompt", "instruction")
    questions = []
    for path in (plan.recipe.resolve(f) for f in plan.recipe.dataset.files):
        # As datagen's own journals are read: only lines that end in a newline, broken ones passed over.
        rows = AppendJournal(path).records() if path.suffix == ".jsonl" else json.loads(path.read_text(encoding="utf-8"))
        questions += [str(r[column]) for r in rows if isinstance(r, dict) and r.get(column)]
    return questions


def overridden_by_review(set_aside: set[str], records: list[dict[str, Any]], review: list[dict[str, Any]]) -> set[str]:
    """Pairs the judge set aside that a person then accepted or edited in `domainft review`: a person's decision
    overrides the judge's, so they go back to the split."""
    if not set_aside or not review:
        return set()
    states, _ = fold(review, {pid: r for r in records if (pid := pair_id(r)) in set_aside})
    return {pid for pid, state in states.items() if state.status in ("accepted", "edited")}


def _write_atomic(path: Path, text: str) -> None:
    atomic_write(path, text)
