"""An LLM judge: items in, a score per item out, on a rubric, through domainft.llm's client and retry policy.

Cached: each verdict is appended (and fsync'd) to a JSONL keyed by the sha256 of what decides it (the item's
text, the rubric, the judge model and server), so an unchanged item is never judged twice, a run killed midway
resumes where it stopped, and a torn last line is dropped. A failure (retries spent, a reply that does not
parse, a score outside the scale) comes back as *not judged* with its reason: never a score, never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..llm.batch import progress_line, run_pool
from ..llm.providers import Provider, Transient, make_provider
from ..llm.replies import BadReply, parse_json_reply
from ..llm.retry import BACKOFF_INITIAL_S, BACKOFF_MAX_S, UNREACHABLE_S  # module globals: tests shorten them
from ..llm.retry import RateLimiter, Reachability, attempts, backoff
from ..recipe import TeacherConfig
from ..run_files import AppendJournal
from .rubric import Rubric


@dataclass(frozen=True)
class JudgeItem:
    """`id` names the item in the result; `fields` fill the rubric's template and are all of what is judged."""

    id: str
    fields: dict[str, str]


@dataclass
class Verdict:
    id: str
    score: float | None = None  # overall (the rubric's `combine` of the criteria); None: not judged
    scores: dict[str, int] = field(default_factory=dict)  # per criterion
    reason: str = ""  # the judge's
    failure: str | None = None  # why it was not judged
    cached: bool = False

    @property
    def judged(self) -> bool:
        return self.failure is None


@dataclass
class JudgeOutcome:
    verdicts: dict[str, Verdict]  # by item id, in the order the items came
    judged: int = 0  # scored in this run
    cached: int = 0  # scored by an earlier run
    failed: int = 0
    retries: int = 0
    tokens: int | None = None
    errors: dict[str, int] = field(default_factory=dict)  # transient faults and bad replies by kind

    def failed_reasons(self) -> dict[str, int]:
        return dict(Counter(v.failure for v in self.verdicts.values() if v.failure))


def cache_key(item: JudgeItem, rubric: Rubric, cfg: TeacherConfig) -> str:
    """sha256 of everything that decides a verdict; the item's id is not in it (the same text is the same item)."""
    parts = [item.fields, rubric.text_hash(), cfg.provider, cfg.model, (cfg.base_url or "").rstrip("/")]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class VerdictCache:
    """Append-only JSONL of successful verdicts (run_files.AppendJournal: one fsync'd line each)."""

    def __init__(self, path: Path):
        self.path = path
        self.journal = AppendJournal(path)
        self.entries: dict[str, dict[str, Any]] = {
            entry["key"]: entry for entry in self.journal.records() if isinstance(entry.get("key"), str)}
        self.journal.repair()  # a line torn by a kill: the next append starts a fresh line
        self.journal.open()

    def add(self, key: str, verdict: Verdict, model: str | None) -> None:
        entry = {"key": key, "score": verdict.score, "scores": verdict.scores, "reason": verdict.reason,
                 "model": model}
        self.journal.append(entry)
        self.entries[key] = entry

    def close(self) -> None:
        self.journal.close()


def parse_verdict(text: str, rubric: Rubric) -> tuple[dict[str, int], float, str]:
    """Scores per criterion, the overall score and the reason from one reply; BadReply when unusable."""
    try:  # a raw newline inside the reason (small models write one) is still a readable verdict
        reply = json.loads(text.strip(), strict=False)
    except ValueError:
        reply = parse_json_reply(text)
    # Shape only: the length caps in the schema steer a constrained server, a longer reason is still a reason.
    if (not isinstance(reply, dict) or not isinstance(reply.get("reason"), str)
            or any(key not in reply for key in rubric.schema_.get("required", []))):
        raise BadReply("schema")
    scores: dict[str, int] = {}
    for criterion in rubric.criteria:
        value = reply[criterion.name]
        if isinstance(value, bool) or not isinstance(value, int) or value not in rubric.scale:
            raise BadReply("score_out_of_scale")
        scores[criterion.name] = value
    overall = min(scores.values()) if rubric.combine == "min" else sum(scores.values()) / len(scores)
    return scores, overall, str(reply["reason"]).strip()


class _Judging:
    def __init__(self, cfg: TeacherConfig, rubric: Rubric, provider: Provider, cache: VerdictCache, where: str):
        self.cfg, self.rubric, self.provider, self.cache = cfg, rubric, provider, cache
        self.limiter = RateLimiter(cfg.rate_limit_per_s)
        self.wait = backoff(BACKOFF_INITIAL_S, BACKOFF_MAX_S)
        self.reachability = Reachability(UNREACHABLE_S, "judge", where)
        self.errors: Counter = Counter()
        self.retries = 0
        self.tokens: int | None = None
        self.judged = 0

    async def one(self, item: JudgeItem, key: str) -> Verdict:
        tries = self.cfg.max_retries + 1
        try:
            async for attempt in attempts(self.cfg.max_retries, self.wait, self._count_retry):
                with attempt:
                    scores, overall, reason = await self._attempt(item)
        except Transient as exc:
            return Verdict(item.id, failure=f"{exc.kind} after {tries} attempts")
        except BadReply as exc:
            return Verdict(item.id, failure=f"{exc.reason} after {tries} attempts")
        verdict = Verdict(item.id, score=overall, scores=scores, reason=reason)
        self.cache.add(key, verdict, self.cfg.model)
        self.judged += 1
        return verdict

    async def _attempt(self, item: JudgeItem) -> tuple[dict[str, int], float, str]:
        await self.limiter.acquire()
        target = self.provider.url or str(self.cfg.model)
        with self.reachability.watching(target, self.errors, self.errors):
            reply = await self.provider.chat(self.rubric.messages(item.fields), schema=self.rubric.schema_,
                                             temperature=self.rubric.temperature, max_tokens=self.rubric.max_tokens)
            if reply.tokens is not None:
                self.tokens = (self.tokens or 0) + reply.tokens
            return parse_verdict(reply.text or "", self.rubric)

    def _count_retry(self, state) -> None:
        self.retries += 1


def judge_items(items: Iterable[JudgeItem], cfg: TeacherConfig, rubric: Rubric, cache_path: Path, *,
                where: str = "eval.judge", progress: bool = True, console=None, label: str = "judge") -> JudgeOutcome:
    """Judge each item on the rubric with cfg's provider (cfg.concurrency at once, rate-limited, retried);
    verdicts already in the cache at cache_path are reused. `where` is the recipe section, for errors.

    Raises TeacherError (one line, `where` pointing at the key) when the judge cannot work at all: no key,
    nothing listening at the start, or every connection refused for UNREACHABLE_S (verdicts so far are kept)."""
    items = list(items)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("judge item ids must be unique")
    cache = VerdictCache(cache_path)
    outcome = JudgeOutcome(verdicts={})
    todo: list[tuple[JudgeItem, str]] = []
    for item in items:
        key = cache_key(item, rubric, cfg)
        if (entry := cache.entries.get(key)) is not None:
            outcome.verdicts[item.id] = Verdict(item.id, score=entry["score"], scores=entry["scores"],
                                                reason=entry["reason"], cached=True)
        else:
            outcome.verdicts[item.id] = Verdict(item.id, failure="pending")  # replaced when judged
            todo.append((item, key))
    outcome.cached = len(items) - len(todo)
    try:
        if todo:
            provider = make_provider(cfg, where)
            judging = _Judging(cfg, rubric, provider, cache, f"{where}.base_url")
            try:
                asyncio.run(_judge_all(judging, provider, todo, outcome, progress, console, label))
            finally:
                outcome.judged, outcome.retries, outcome.tokens = judging.judged, judging.retries, judging.tokens
                outcome.errors = dict(judging.errors)
    finally:
        cache.close()
    outcome.failed = sum(not v.judged for v in outcome.verdicts.values())
    return outcome


async def _judge_all(judging: _Judging, provider: Provider, todo: list[tuple[JudgeItem, str]],
                     outcome: JudgeOutcome, progress: bool, console, label: str) -> None:
    try:
        await provider.check()

        def fields_of(done: int, seconds: float) -> dict[str, Any]:
            return {"rate": done / seconds, "failed": done - judging.judged, "errors": sum(judging.errors.values())}

        fields = "{task.fields[rate]:.1f} items/s · {task.fields[failed]} not judged · {task.fields[errors]} errors"
        with progress_line(label, fields, len(todo), fields_of, show=progress, console=console) as tick:

            async def one(entry: tuple[JudgeItem, str]) -> None:
                item, key = entry
                outcome.verdicts[item.id] = await judging.one(item, key)
                tick()

            # A fatal error in one worker ends the others (their done items are cached).
            await run_pool(todo, min(judging.cfg.concurrency, len(todo)), one)
    finally:
        await provider.aclose()
